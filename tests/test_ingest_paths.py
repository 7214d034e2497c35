"""``ingest`` stays inside what it was given: links out of the folder, special files, binary
files and bad names are skipped and named, the rest of the folder is ingested."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from memory.manager import MemoryManager
from memory.vectors.embeddings import HashEmbedder

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "id_rsa"
    secret.parent.mkdir()
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY----- secret-key-material\n")
    (tmp_path / "outside" / "more.md").write_text("outside folder text\n")
    d = tmp_path / "notes"
    d.mkdir()
    (d / "good.md").write_text("The quarterly report is due on the 14th.\n")
    (d / "inner.md").write_text("inner target text\n")
    os.symlink(d / "inner.md", d / "alias.md")  # stays inside: read once
    os.symlink(secret, d / "notes.md")  # leaves the folder
    os.symlink(secret.parent, d / "linked_dir")
    (d / "late_nul.md").write_bytes(b"a" * 9000 + b"\x00" + b"b" * 10)
    os.mkfifo(d / "pipe.md")
    (d / os.fsdecode(b"bad-\xff-name.md")).write_text("a file with a non-UTF-8 name\n")
    (d / "image.png").write_bytes(b"\x89PNG")
    return d


def _texts(m: MemoryManager) -> str:
    return " ".join(c.text for c in m.archival.iter_chunks())


def test_ingest_skips_and_names_what_it_should_not_read(tree: Path, tmp_path: Path) -> None:
    with MemoryManager.open(tmp_path / "store", embedder=HashEmbedder(), background_embed=False) as m:
        s = m.archival.ingest(tree, progress=False, embed=False)
        text = _texts(m)
        reasons = {Path(p).name: r for p, r in s.problems}
        assert "secret-key-material" not in text and "outside folder" not in text
        assert "quarterly report" in text and text.count("inner target text") == 1
        assert "outside" in reasons["notes.md"] and "--follow-symlinks" in reasons["notes.md"]
        assert "outside" in reasons["linked_dir"]
        assert "NUL byte at offset 9000" in reasons["late_nul.md"]
        assert "FIFO" in reasons["pipe.md"]
        assert any("not valid UTF-8" in r for r in reasons.values())
        assert "image.png" not in reasons  # another extension inside a folder: counted, not a problem
        assert s.files == 2 and s.skipped == len(s.problems) + 1
        followed = m.archival.ingest(tree, progress=False, embed=False, follow_symlinks=True)
        assert "secret-key-material" in _texts(m)
        assert not any("outside" in r for _, r in followed.problems)


def test_cli_ingest_names_skipped_files_and_exits_1(tree: Path, tmp_path: Path) -> None:
    store = tmp_path / "cli"
    env = dict(os.environ, PYTHONPATH=str(REPO), RLMEM_BACKGROUND_EMBED="false")

    def rlmem(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agents.cli.main", *args], capture_output=True, text=True,
                              env=env, timeout=300, cwd=REPO)

    assert rlmem("init", str(store)).returncode == 0
    (tree / "pipe.md").unlink()  # the model loads for embedding; keep the folder small otherwise
    named = tmp_path / "todo.org"
    named.write_text("org text about the zeppelin\n")
    p = rlmem("ingest", str(tree), str(named), "--store", str(store), "--no-progress")
    assert p.returncode == 1, p.stderr  # the link out of the folder was skipped
    assert "ingested 3 files" in p.stdout  # a file named explicitly is read whatever its extension
    assert "notes.md: a symbolic link" in p.stderr and "todo.org" not in p.stderr
    bare = tmp_path / "NOTES"
    bare.write_text("no extension at all\n")
    again = rlmem("ingest", str(bare), "--store", str(store), "--no-progress")
    assert again.returncode == 0 and "ingested 1 file," in again.stdout, again.stdout + again.stderr
    binary = tmp_path / "blob.org"
    binary.write_bytes(b"\x00\x01binary")
    refused = rlmem("ingest", str(binary), "--store", str(store), "--no-progress")
    assert refused.returncode == 1 and "blob.org: binary" in refused.stderr, refused.stderr
