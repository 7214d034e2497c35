"""Configuration of a memory store: arguments > environment variables > TOML file > defaults.

Rules this module keeps:

* A store is a directory: ``memory.db`` (SQLite), ``chroma/`` (embedded Chroma) and an
  optional ``rlmem.toml``. ``database_url`` (PostgreSQL) and ``chroma_host`` (a Chroma
  server) select the scale-out path instead.
* Every option can come from a keyword argument, an environment variable or the TOML file,
  in that order of precedence. Strings are parsed here, at the edge, into typed values;
  anything malformed is a ``ConfigError`` naming its origin (the argument, the variable,
  or the file and line).

Environment variables (all optional):

==========================  ==================================================  ============
variable                    meaning                                             default
==========================  ==================================================  ============
``RLMEM_STORE``             store directory (``RLMEM_DIR`` is the same)         see below
``RLMEM_DATABASE_URL``      SQLAlchemy/PostgreSQL URL instead of memory.db      (none)
``RLMEM_CHROMA_HOST``       Chroma server host instead of the embedded store    (none)
``RLMEM_CHROMA_PORT``       Chroma server port                                  ``8000``
``RLMEM_CHROMA_SSL``        use HTTPS for the Chroma server                     ``false``
``RLMEM_EMBED_MODEL``       encoder: ``all-MiniLM-L6-v2`` or                    MiniLM
                            ``all-mpnet-base-v2`` (the ``mpnet`` extra);
                            another model re-embeds the store
``RLMEM_MODEL_PATH``        sentence-transformers model directory (instead of   packaged MiniLM
                            embed_model)
``RLMEM_EMBED_BATCH_SIZE``  texts per model call                                ``64``
``RLMEM_EMBED_THREADS``     embedding threads (0 = the runtime's default)       ``1``
``RLMEM_EMBED_BACKEND``     ``auto`` (onnxruntime when installed), ``onnx``,     ``auto``
                            ``torch``: same vectors, see memory.vectors.onnx;
                            ``onnx-int8``: faster, other vectors (re-embeds);
                            ``hash``: a non-semantic test embedder
``RLMEM_EMBED_DEVICE``      ``auto`` (a CUDA GPU when visible), ``cpu``,         ``auto``
                            ``cuda``, ``cuda:N``
``RLMEM_EMBED_RECALL``      embed recall messages for semantic search           ``true``
``RLMEM_RECALL_PASSAGES``   embed a message sentence by sentence (best passage  ``true``
                            scores it); false: one vector per message
``RLMEM_BACKGROUND_EMBED``  embed queued items in a background thread           ``true``
``RLMEM_BUSY_TIMEOUT_S``    seconds to wait for another writer                  ``30``
``RLMEM_TEXT_WEIGHT``       base BM25 weight of hybrid fusion (0..1)            ``0.5``
``RLMEM_FUSION``            hybrid fusion: ``convex`` or ``rrf``                ``convex``
``RLMEM_FUSION_DEPTH``      candidates per method in hybrid search (0 = the     ``0``
                            tier's default: 200 recall, 100 archival)
``RLMEM_EXACT_SEARCH_MAX``  up to this many items a tier answers unfiltered      ``50000``
                            vector queries exactly from SQL (0 = always Chroma)
``RLMEM_ISOLATION``         sandbox of model code: ``kernel`` or ``process``    ``kernel``
                            (process-only is weaker: docs/sandbox.md); a plain
                            string here, read by whoever starts a sandbox
==========================  ==================================================  ============

With no directory given, a store is ``$RLMEM_STORE`` (or ``$RLMEM_DIR``), else
``$XDG_DATA_HOME/rlmem`` (``~/.local/share/rlmem``): the library and ``rlmem`` open the same one
(``default_store_dir``).

The TOML file uses the same names without the prefix, lower-case, at top level
(``embed_threads = 2``), or under a ``[memory]`` table.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memory.errors import ConfigError

__all__ = ["ENV_PREFIX", "TOML_NAME", "MemoryConfig", "default_store_dir", "store_exists"]

ENV_PREFIX = "RLMEM_"
TOML_NAME = "rlmem.toml"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class MemoryConfig:
    """Every setting of a store. Build one with ``MemoryConfig.load(...)``."""

    dir: Path = field(default_factory=lambda: default_store_dir())
    database_url: str | None = None
    chroma_host: str | None = None
    chroma_port: int = 8000
    chroma_ssl: bool = False
    model_path: Path | None = None
    embed_model: str = "all-MiniLM-L6-v2"
    embed_batch_size: int = 64
    embed_threads: int = 1
    embed_backend: str = "auto"
    embed_device: str = "auto"
    embed_recall: bool = True
    recall_passages: bool = True
    background_embed: bool = True
    busy_timeout_s: float = 30.0
    text_weight: float | None = None  # None: each tier's own (messages 0.4, chunks 0.5)
    fusion: str = "convex"
    fusion_depth: int = 0
    exact_search_max: int = 50_000
    isolation: str | None = None  # None: the sandbox's own default (kernel)

    @property
    def db_target(self) -> str:
        """What ``Database.open`` gets: the URL, or the SQLite file in the directory."""
        return self.database_url or str(self.dir / "memory.db")

    @property
    def chroma_path(self) -> Path:
        return self.dir / "chroma"

    @classmethod
    def load(
        cls,
        path_or_config: str | Path | MemoryConfig | None = None,
        *,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> MemoryConfig:
        """Merge defaults < TOML file < environment < ``overrides``.

        ``path_or_config`` is a store directory, a TOML file, or a config to start from.
        """
        env = os.environ if env is None else env
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise ConfigError(
                f"unknown configuration option {sorted(unknown)[0]!r}; known: {', '.join(sorted(names))}"
            )
        values: dict[str, Any] = {}
        if isinstance(path_or_config, MemoryConfig):
            values.update(dataclasses.asdict(path_or_config))
            directory = path_or_config.dir
        else:
            raw_dir = path_or_config if path_or_config is not None else (
                env.get(f"{ENV_PREFIX}STORE") or env.get(f"{ENV_PREFIX}DIR"))
            directory = Path(raw_dir).expanduser() if raw_dir else default_store_dir(env)
            toml_file = directory / TOML_NAME
            if directory.suffix == ".toml":
                toml_file, directory = directory, directory.parent
            if toml_file.is_file():
                values.update(_read_toml(toml_file, names))
            values.setdefault("dir", directory)
            for name in names - {"dir"}:
                raw = env.get(f"{ENV_PREFIX}{name.upper()}")
                if raw is not None and raw != "":
                    values[name] = _coerce(cls, name, raw, f"environment variable {ENV_PREFIX}{name.upper()}")
            if path_or_config is not None:
                values["dir"] = directory
        for name, v in overrides.items():
            if v is not None:
                values[name] = _coerce(cls, name, v, f"argument {name}=")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


def _field_type(cls: type, name: str) -> str:
    return str(next(f.type for f in dataclasses.fields(cls) if f.name == name))


def _coerce(cls: type, name: str, value: Any, origin: str) -> Any:
    kind = _field_type(cls, name)
    try:
        if "bool" in kind:
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in _TRUE:
                return True
            if s in _FALSE:
                return False
            raise ValueError("expected true or false")
        if kind.startswith("int"):
            if isinstance(value, bool):
                raise ValueError("expected an integer")
            n = int(value)
            if n < 0 or (name not in ("embed_threads", "fusion_depth", "exact_search_max") and n == 0):
                raise ValueError("must be positive")
            return n
        if kind.startswith("float"):
            x = float(value)
            if name == "text_weight" and not 0.0 <= x <= 1.0:
                raise ValueError("must be between 0 and 1")
            if x <= 0 and name != "text_weight":
                raise ValueError("must be positive")
            return x
        if "Path" in kind:
            return Path(str(value)).expanduser()
        s = str(value)
        if name == "fusion" and s not in ("convex", "rrf"):
            raise ValueError("expected convex or rrf")
        if name == "embed_backend" and s.lower() not in ("auto", "onnx", "onnx-int8", "torch", "hash"):
            raise ValueError("expected auto, onnx, onnx-int8, torch or hash")
        if name == "embed_model":
            from memory.vectors.models import MODELS, canonical

            try:
                return canonical(s)
            except ConfigError:
                raise ValueError(f"expected one of {', '.join(MODELS)}") from None
        if name == "embed_device" and not re.fullmatch(r"auto|cpu|cuda(:\d+)?", s.lower()):
            raise ValueError("expected auto, cpu, cuda or cuda:N")
        if name == "isolation":
            s = s.strip().lower()
            if s not in ("kernel", "process"):
                raise ValueError("expected kernel or process")
        return s
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{origin}: invalid value {value!r} for {name} ({exc})") from None


def default_store_dir(env: Mapping[str, str] | None = None) -> Path:
    """The store used when none is named: ``$XDG_DATA_HOME/rlmem``, or ``~/.local/share/rlmem``
    when that variable is unset (``RLMEM_STORE``/``RLMEM_DIR`` are read before this)."""
    env = os.environ if env is None else env
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "rlmem"


#: Files of which one marks a directory as a store (``store_exists``).
STORE_MARKERS = ("memory.db", TOML_NAME)


def store_exists(path: Path) -> bool:
    """Whether ``path`` is a store directory (it holds ``memory.db`` or ``rlmem.toml``)."""
    return path.is_dir() and any((path / m).exists() for m in STORE_MARKERS)


#: ``rlmem.toml`` tables that are not memory options (read by ``agents.cli.model``).
OTHER_TABLES = frozenset({"model"})


def read_toml(path: Path) -> dict[str, Any]:
    """The whole of a configuration file; ``ConfigError`` naming the file (and the line) when
    it cannot be read or parsed."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        line = f", line {m.group(1)}" if m else ""
        raise ConfigError(f"{path}{line}: malformed TOML ({exc}); fix or remove the file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc})") from None


def _read_toml(path: Path, names: set[str]) -> dict[str, Any]:
    data = read_toml(path)
    # Tables other parts of the program read (``[model]``: the CLI's model settings) are theirs.
    data = {k: v for k, v in data.items() if not (k in OTHER_TABLES and isinstance(v, dict))}
    if isinstance(data.get("memory"), dict):
        data = {**{k: v for k, v in data.items() if k != "memory"}, **data["memory"]}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{path}: unknown option {key!r}; known: {', '.join(sorted(names))}")
        origin = f"{path} option {key}"
        v = _coerce(MemoryConfig, key, value, origin)
        if key == "dir" or (key == "model_path" and not Path(str(v)).is_absolute()):
            v = (path.parent / Path(str(v))).resolve()  # relative to the file, not the cwd
        out[key] = v
    return out
