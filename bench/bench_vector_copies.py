"""What the SQL copies of the vectors cost on disk, per million messages, against a baseline checkout.

Usage::

    git worktree add /tmp/imp-base 2001c9d    # the code with float32 copies
    .venv/bin/python bench/bench_vector_copies.py --baseline /tmp/imp-base [--messages 10000]

A JSON-lines chat of ``--messages`` messages in LongMemEval's shape (``tests/transcript_gen.py``:
sessions of short user turns and longer assistant turns) is imported and embedded with the
store's own model (the real MiniLM, through ``CachedEmbedder`` so the second store reads the
first one's vectors instead of embedding again) into a fresh store by the current code and by
the baseline code, each in its own process. For each store: the messages' text (UTF-8 bytes),
the vectors kept (one per passage), and the bytes the ``rlmem_vectors`` table and its primary
key index take in the SQLite file (``dbstat``: pages, so overhead included); then those
figures scaled to one million messages (linear: a copy's size depends only on its passages),
the ratio to the text, and current/baseline. The Chroma directory is shown for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from transcript_gen import write_chat  # noqa: E402

_CHILD = r"""
import json, sys
from pathlib import Path
from sqlalchemy import text
from agents.integrations.transcripts import import_transcript
from memory.config import MemoryConfig
from memory.manager import MemoryManager
from memory.vectors.backends import make_embedder
from memory.vectors.embeddings import CachedEmbedder

chat, store, cache = map(Path, sys.argv[1:4])
emb = CachedEmbedder(make_embedder(MemoryConfig()), cache)
with MemoryManager.open(store, embedder=emb, background_embed=False) as mem:
    import_transcript(mem, chat)
    mem.embed_pending()
    with mem.db.read() as conn:
        q = lambda sql: conn.execute(text(sql)).scalar() or 0
        cols = {r[1] for r in conn.execute(text("PRAGMA table_info(rlmem_vectors)"))}
        itemsize = 2 if "dtype" in cols and q("SELECT COUNT(*) FROM rlmem_vectors WHERE dtype = 'float16'") else 4
        out = {
            "messages": q("SELECT COUNT(*) FROM recall_messages"),
            "text_bytes": q("SELECT SUM(length(CAST(content AS BLOB))) FROM recall_messages"),
            "vec_rows": q("SELECT COUNT(*) FROM rlmem_vectors"),
            "vectors": q("SELECT SUM(length(vec)) FROM rlmem_vectors") // (itemsize * emb.dim),
            "payload_bytes": q("SELECT SUM(length(vec)) FROM rlmem_vectors"),
            "copy_bytes": q("SELECT SUM(pgsize) FROM dbstat WHERE name IN ('rlmem_vectors',"
                            " 'sqlite_autoindex_rlmem_vectors_1')"),
            "itemsize": itemsize,
        }
chroma = sum(p.stat().st_size for p in (store / "chroma").rglob("*") if p.is_file())
print(json.dumps({**out, "chroma_bytes": chroma}))
"""


def measure(code: Path, chat: Path, work: Path) -> dict[str, int]:
    store = work / f"store-{code.name}"
    subprocess.run(["rm", "-rf", str(store)], check=True)
    env = {**os.environ, "PYTHONPATH": str(code), "ANONYMIZED_TELEMETRY": "False", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", _CHILD, str(chat), str(store), str(work / "emb-cache.db")],
                         capture_output=True, text=True, env=env, cwd=code, check=False)
    if res.returncode != 0:
        raise SystemExit(f"the store of {code} failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", type=Path, required=True, help="a checkout of the code to compare against")
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "rlmem-bench-vectors")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    chat = args.work / f"chat-{args.messages}.jsonl"
    if not chat.exists():
        write_chat(chat, args.messages)
    cur = measure(ROOT, chat, args.work)
    base = measure(args.baseline.resolve(), chat, args.work)
    if (cur["messages"], cur["vectors"]) != (base["messages"], base["vectors"]):
        raise SystemExit(f"the stores differ: {cur} vs {base}")
    per = 1e6 / cur["messages"]
    print(f"{cur['messages']:,} LongMemEval-like messages, {cur['vectors']:,} vectors (passages) of the real model, "
          f"{cur['text_bytes'] * per / 1e6:,.0f} MB of text per 1M messages; figures scaled to 1M messages")
    print(f"{'':<26}{'element':>9}{'payload MB':>12}{'on disk MB':>12}{'x text':>8}{'bytes/msg':>11}")
    for name, r in (("baseline (float32)", base), ("current", cur)):
        print(f"{name:<26}{'f' + str(8 * r['itemsize']):>9}{r['payload_bytes'] * per / 1e6:>12,.0f}"
              f"{r['copy_bytes'] * per / 1e6:>12,.0f}{r['copy_bytes'] / r['text_bytes']:>8.2f}"
              f"{r['copy_bytes'] / r['messages']:>11,.0f}")
    print(f"current/baseline on disk: x{cur['copy_bytes'] / base['copy_bytes']:.2f}; "
          f"Chroma directory for scale: {cur['chroma_bytes'] * per / 1e6:,.0f} MB per 1M messages")


if __name__ == "__main__":
    main()
