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
``RLMEM_DIR``               store directory                                     ``./.rlmem``
``RLMEM_DATABASE_URL``      SQLAlchemy/PostgreSQL URL instead of memory.db      (none)
``RLMEM_CHROMA_HOST``       Chroma server host instead of the embedded store    (none)
``RLMEM_CHROMA_PORT``       Chroma server port                                  ``8000``
``RLMEM_CHROMA_SSL``        use HTTPS for the Chroma server                     ``false``
``RLMEM_MODEL_PATH``        sentence-transformers model directory               packaged MiniLM
``RLMEM_EMBED_BATCH_SIZE``  texts per model call                                ``64``
``RLMEM_EMBED_THREADS``     torch threads (0 = torch's default)                 ``1``
``RLMEM_EMBED_DEVICE``      torch device                                        ``cpu``
``RLMEM_EMBED_RECALL``      embed recall messages for semantic search           ``true``
``RLMEM_RECALL_PASSAGES``   embed a message sentence by sentence (best passage  ``true``
                            scores it); false: one vector per message
``RLMEM_BACKGROUND_EMBED``  embed queued items in a background thread           ``true``
``RLMEM_BUSY_TIMEOUT_S``    seconds to wait for another writer                  ``30``
``RLMEM_TEXT_WEIGHT``       base BM25 weight of hybrid fusion (0..1)            ``0.5``
``RLMEM_FUSION``            hybrid fusion: ``convex`` or ``rrf``                ``convex``
``RLMEM_FUSION_DEPTH``      candidates per method in hybrid search (0 = the     ``0``
                            tier's default: 200 recall, 100 archival)
``RLMEM_ISOLATION``         sandbox of model code: ``kernel`` or ``process``    ``kernel``
                            (process-only is weaker: docs/sandbox.md); a plain
                            string here, read by whoever starts a sandbox
==========================  ==================================================  ============

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

__all__ = ["ENV_PREFIX", "TOML_NAME", "MemoryConfig"]

ENV_PREFIX = "RLMEM_"
TOML_NAME = "rlmem.toml"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class MemoryConfig:
    """Every setting of a store. Build one with ``MemoryConfig.load(...)``."""

    dir: Path = field(default_factory=lambda: Path(".rlmem"))
    database_url: str | None = None
    chroma_host: str | None = None
    chroma_port: int = 8000
    chroma_ssl: bool = False
    model_path: Path | None = None
    embed_batch_size: int = 64
    embed_threads: int = 1
    embed_device: str = "cpu"
    embed_recall: bool = True
    recall_passages: bool = True
    background_embed: bool = True
    busy_timeout_s: float = 30.0
    text_weight: float = 0.5
    fusion: str = "convex"
    fusion_depth: int = 0
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
            raw_dir = path_or_config if path_or_config is not None else env.get(f"{ENV_PREFIX}DIR")
            directory = Path(raw_dir).expanduser() if raw_dir else Path(".rlmem")
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
            if n < 0 or (name not in ("embed_threads", "fusion_depth") and n == 0):
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
        if name == "isolation":
            s = s.strip().lower()
            if s not in ("kernel", "process"):
                raise ValueError("expected kernel or process")
        return s
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{origin}: invalid value {value!r} for {name} ({exc})") from None


def _read_toml(path: Path, names: set[str]) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        line = f", line {m.group(1)}" if m else ""
        raise ConfigError(f"{path}{line}: malformed TOML ({exc}); fix or remove the file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc})") from None
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
