"""Embedding at the user's scale: cold ``rlmem search`` and embedding throughput, as ratios.

Usage::

    .venv/bin/python bench/bench_embed.py cold [--runs 11] [--messages 5000] [--chunks 2000] [--old DIR]
    .venv/bin/python bench/bench_embed.py throughput [--chunks 1000] [--turns 2000] [--encoders fp32,int8]
        [--scale 10000,100000] [--threads 1] [--old DIR]

``cold``: builds a store (``--messages`` recall messages, ``--chunks`` archival chunks, all
embedded; the vectors are written by a hash embedder under the real model's name, which
makes building fast and changes nothing a search does), then runs each command in a fresh
process ``--runs`` times, alternating commands so machine load hits them alike: ``python -c
pass``, bare sentence-transformers load + encode of one query, ``rlmem search`` in text,
vector and hybrid mode, and the same three with the code of ``--old`` (a checkout of the code
before this change; default: a ``git worktree`` of ``main``'s merge base, made in a
temporary directory). Prints p50/p95 and the ratio to ``python -c pass``. The timed commands
run without ``PYTHONDONTWRITEBYTECODE`` (with it, every start compiles every module again).

``throughput``: ``--chunks`` archival chunks (256-token chunks cut from the LongMemEval dev
haystacks, real text) and ``--turns`` user turns of the same haystacks. Bare
``SentenceTransformer.encode`` (batch 64) embeds the chunks, and the turns' recall passages,
before and after the store runs (their mean is the baseline); each store run is a fresh
process doing the whole path, with this code and with ``--old``, for each of ``--encoders``:
``ArchivalStore.ingest`` of a file of the chunks (chunking, SQL, queue, the encoder, Chroma),
and ``embed_pending`` of the turns appended as recall messages. ``--threads`` applies to all.
Chunks per second (passages per second for recall) and the ratio to bare encode, one run.
``RLMEM_BENCH_DATA``: another path to the dev haystacks. ``--scale``: the store path alone (a hash encoder under the model's name) at larger sizes, to
extrapolate them: embedding is the measured rate times the count, plus that cost; printed as
such, not measured with the model.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
DATA = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "longmemeval_s_dev100.json.gz")  # ../shared/data


class _Named:
    """Hash vectors under the real model's name: a store that looks embedded by MiniLM."""

    def __init__(self, name: str) -> None:
        from memory.vectors.embeddings import HashEmbedder

        self._h = HashEmbedder(384)
        self.name = name
        self.dim = 384

    def embed(self, texts: Any) -> list[list[float]]:
        return self._h.embed(texts)


def _haystack_texts() -> list[str]:
    with gzip.open(os.environ.get("RLMEM_BENCH_DATA") or DATA, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    out: list[str] = []
    for rec in data:
        for sess in rec["haystack_sessions"]:
            out.extend(t["content"] for t in sess if t["role"] == "user" and t["content"].strip())
    return out


def _build_store(path: Path, messages: int, chunks: int) -> None:
    from memory.manager import MemoryManager
    from memory.vectors.onnx import OnnxEmbedder

    mem = MemoryManager.open(path, embedder=_Named(OnnxEmbedder().name), background_embed=False)
    try:
        texts = _haystack_texts()
        if mem.recall.count() < messages:
            rows = [{"content": texts[i % len(texts)], "session_id": f"s{i // 20}"} for i in range(messages)]
            for i in range(0, len(rows), 2000):
                mem.recall.append_many(rows[i : i + 2000])
        if mem.archival.count() < chunks:
            mem.archival.insert_many([f"{texts[(i * 7) % len(texts)]} (chunk {i})" for i in range(chunks)])
        mem.embed_pending()
    finally:
        mem.close()


def _old_tree(arg: str | None) -> tuple[Path, Any]:
    if arg:
        return Path(arg), None
    tmp = tempfile.TemporaryDirectory(prefix="rlmem-old-")
    base = subprocess.run(["git", "-C", str(ROOT), "merge-base", "HEAD", "main"], capture_output=True,
                          text=True, check=True).stdout.strip()
    # The merge base with main is the code before this change only until main takes it in;
    # pass --old with a checkout of the older code then.
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", tmp.name, base],
                   capture_output=True, check=True)
    return Path(tmp.name), tmp


def _time(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    return elapsed


def _p(ts: list[float], q: float) -> float:
    ts = sorted(ts)
    return ts[min(len(ts) - 1, round(q * (len(ts) - 1)))]


def cold(args: argparse.Namespace) -> None:
    from memory.vectors.embeddings import default_model_path

    tmp = tempfile.TemporaryDirectory(prefix="rlmem-bench-")
    store = Path(args.store) if args.store else Path(tmp.name) / "store"
    _build_store(store, args.messages, args.chunks)
    old, old_tmp = (None, None) if args.old == "none" else _old_tree(args.old)
    py = sys.executable
    # Without .pyc files every cold start compiles its modules again: PYTHONDONTWRITEBYTECODE
    # (set in some sandboxes) would measure the compiler, not a user's shell.
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if "PYTHONDONTWRITEBYTECODE" in os.environ:
        print("(PYTHONDONTWRITEBYTECODE unset for the timed commands)")
    new_env = {**clean, "PYTHONPATH": str(ROOT), "RLMEM_STORE": str(store)}
    old_env = {**new_env, "PYTHONPATH": str(old)}
    q = "what did I say about my new job and the commute?"
    bare = ("from sentence_transformers import SentenceTransformer as S; import torch; torch.set_num_threads(1); "
            f"S({str(default_model_path())!r}, device='cpu', local_files_only=True).encode([{q!r}])")
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "python -c pass (baseline)": ([py, "-c", "pass"], new_env),
        "bare sentence-transformers load+encode": ([py, "-c", bare], new_env),
    }
    for who, env in (("new", new_env), ("old", old_env))[: 1 if old is None else 2]:
        for mode in ("text", "vector", "hybrid"):
            commands[f"rlmem search --mode {mode} ({who})"] = (
                [py, "-m", "agents.cli.main", "search", q, "--mode", mode], env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for cmd, env in commands.values():  # warm-up: page cache, .pyc files, the ONNX export
        _time(cmd, env)
    for _ in range(args.runs):
        for name, (cmd, env) in commands.items():
            times[name].append(_time(cmd, env))
    base = statistics.median(times["python -c pass (baseline)"])
    print(f"store: {args.messages} messages + {args.chunks} chunks, {args.runs} runs each, "
          f"cpu count {os.cpu_count()}, load avg {os.getloadavg()[0]:.2f}; old code: {old}")
    print(f"{'command':42} {'p50 s':>7} {'p95 s':>7} {'x pass':>7}")
    for name, ts in times.items():
        print(f"{name:42} {statistics.median(ts):7.3f} {_p(ts, 0.95):7.3f} {statistics.median(ts) / base:7.1f}")
    for mode in ("text", "vector", "hybrid") if old is not None else ():
        n, o = (statistics.median(times[f"rlmem search --mode {mode} ({w})"]) for w in ("new", "old"))
        print(f"{mode}: old / new p50 = {o / n:.2f}x")
    if old_tmp is not None:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
        old_tmp.cleanup()
    tmp.cleanup()


def _rate(fn: Any, texts: list[str]) -> float:
    t0 = time.perf_counter()
    fn(texts)
    return len(texts) / (time.perf_counter() - t0)


_INGEST = """
import sys, time, json
from pathlib import Path
from memory.manager import MemoryManager
from memory.vectors.onnx import OnnxEmbedder
enc = OnnxEmbedder(threads=int(sys.argv[4]), quantize=sys.argv[3] == "int8")
enc.embed(["warm up"] * 8)  # the graph made and loaded before the clock starts, in both codes
mem = MemoryManager.open(Path(sys.argv[2]), embedder=enc, background_embed=False)
t0 = time.perf_counter()
s = mem.archival.ingest(Path(sys.argv[1]), progress=False)
print(json.dumps([s.chunks, time.perf_counter() - t0]))
mem.close()
"""

_RECALL = """
import sys, time, json
from pathlib import Path
from memory.manager import MemoryManager
from memory.vectors.onnx import OnnxEmbedder
enc = OnnxEmbedder(threads=int(sys.argv[4]), quantize=sys.argv[3] == "int8")
enc.embed(["warm up"] * 8)
rows = json.loads(Path(sys.argv[1]).read_text())
mem = MemoryManager.open(Path(sys.argv[2]), embedder=enc, background_embed=False)
for i in range(0, len(rows), 2000):
    mem.recall.append_many(rows[i : i + 2000])
t0 = time.perf_counter()
n = mem.embed_pending(tiers=["recall"])
print(json.dumps([n, time.perf_counter() - t0]))
mem.close()
"""


def _write_docs(folder: Path, chunks: list[str]) -> Path:
    """``chunks`` as Markdown files of 10,000 chunks each (about 12 MB: ingest refuses a file
    over 50 MB) in ``folder``, which is returned."""
    folder.mkdir()
    for f in range(0, len(chunks), 10_000):
        (folder / f"part-{f // 10_000:03d}.md").write_text("\n\n".join(chunks[f : f + 10_000]), encoding="utf-8")
    return folder


def _child(code: str, tree: Path, *argv: str) -> tuple[int, float]:
    """Run ``code`` with the package of ``tree`` in a fresh process; its (items, seconds)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "ANONYMIZED_TELEMETRY": "False", "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    out = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{tree}: {out.stderr[-2000:]}")
    n, secs = json.loads(out.stdout.strip().splitlines()[-1])
    return int(n), float(secs)


def throughput(args: argparse.Namespace) -> None:
    """Bare ``SentenceTransformer.encode`` against the whole store path (chunking, SQL, queue,
    the ONNX encoder, Chroma) of this code and of ``--old``, for archival ingest and recall
    embedding, each in a fresh process, the same threads, the same texts, one run."""
    from memory.text.chunking import chunk_text, passages
    from memory.vectors.embeddings import SentenceTransformerEmbedder

    texts = _haystack_texts()
    chunks: list[str] = []
    # The dev haystack holds about 6,800 distinct chunks; a larger --chunks goes round it again
    # with each text marked by its round, so every chunk stays distinct (ingest drops repeats).
    for rnd in range(1 + args.chunks // 3000):
        marked = texts if rnd == 0 else [f"(round {rnd}) {t}" for t in texts]
        body = "\n\n".join(marked[: (args.chunks - len(chunks)) * 6])
        chunks = list(dict.fromkeys(chunks + [c.text for c in chunk_text(body, chunk_tokens=256, overlap=32) if c.text]))
        if len(chunks) >= args.chunks:
            break
    chunks = chunks[: args.chunks]
    turns = texts[: args.turns]
    pieces = [p for t in turns for p in passages(t)]
    st = SentenceTransformerEmbedder(threads=args.threads, batch_size=64)
    bare = lambda xs: st.model.encode(xs, batch_size=64, normalize_embeddings=True, show_progress_bar=False)  # noqa: E731
    bare(["warm up"])
    old, old_tmp = (None, None) if args.old == "none" else _old_tree(args.old)
    encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    print(f"cpu count {os.cpu_count()}, load avg {os.getloadavg()[0]:.2f}; old code: {old}; "
          f"{args.threads} thread(s) each")
    with tempfile.TemporaryDirectory(prefix="rlmem-tp-") as tmp:
        doc = _write_docs(Path(tmp) / "docs", chunks)
        rows = Path(tmp) / "rows.json"
        rows.write_text(json.dumps([{"content": t, "session_id": f"s{i // 20}"} for i, t in enumerate(turns)]))
        paths = [p for p in (
            ("archival ingest", chunks, _INGEST, doc, "chunks"),
            ("recall embedding", pieces, _RECALL, rows, "passages"),
        ) if p[0].split()[0] in args.paths]
        for label, items, code, src, unit in paths:
            results: dict[str, float] = {}
            # Bare encode on an even sample of the same texts when --bare-sample is set (a 10K
            # ingest would otherwise spend most of the run on the baseline, twice).
            step = max(1, len(items) // args.bare_sample) if args.bare_sample else 1
            sample = items[::step]
            b0 = _rate(bare, sample)
            for e, enc in enumerate(encoders):
                pair = [("new", ROOT)] + ([("old", old)] if old is not None else [])
                # ABBA: the order of new and old alternates, so a load that drifts during the
                # run favours neither.
                for who, tree in pair if (e + (unit == "passages")) % 2 == 0 else pair[::-1]:
                    n, secs = _child(code, tree, str(src), str(Path(tmp) / f"{label[:3]}-{who}-{enc}"), enc,
                                     str(args.threads))
                    per = n / secs if unit == "chunks" else len(items) / secs  # recall: n counts messages
                    results[f"{enc} {who} ({n} items)"] = per
            b1 = _rate(bare, sample)
            base = (b0 + b1) / 2  # bare measured before and after the store runs
            print(f"\n{label}: {len(items)} {unit}" + (f" of {len(turns)} user turns" if unit == "passages" else "")
                  + f"; load avg {os.getloadavg()[0]:.2f}")
            print(f"  {'bare SentenceTransformer.encode':34} {base:8.1f} {unit}/s  1.00x  (before {b0:.1f}, after {b1:.1f}"
                  + (f"; on {len(sample)} of the {len(items)} texts, evenly spread)" if step > 1 else ")"))
            for k, r in results.items():
                print(f"  {k:34} {r:8.1f} {unit}/s  {r / base:5.2f}x")
        if args.scale:
            _scale(args, chunks, Path(tmp))
    if old_tmp is not None:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
        old_tmp.cleanup()


def _scale(args: argparse.Namespace, chunks: list[str], tmp: Path) -> None:
    """The store path's own cost (chunking, SQL, queue, Chroma) at larger sizes, with a hash
    encoder under the model's name: what embedding at the measured rate adds to it is
    extrapolated, not measured."""
    from memory.manager import MemoryManager
    from memory.vectors.onnx import OnnxEmbedder

    print("\nstore path without the model (hash vectors), to extrapolate larger ingests:")
    for n in (int(x) for x in args.scale.split(",")):
        doc = _write_docs(tmp / f"scale-{n}", [f"{chunks[i % len(chunks)]} (copy {i})" for i in range(n)])
        mem = MemoryManager.open(tmp / f"scale-{n}", embedder=_Named(OnnxEmbedder().name), background_embed=False)
        t0 = time.perf_counter()
        s = mem.archival.ingest(doc, progress=False)
        secs = time.perf_counter() - t0
        mem.close()
        print(f"  {s.chunks} chunks: {secs:.1f} s, {1e3 * secs / max(s.chunks, 1):.2f} ms a chunk")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("cold")
    c.add_argument("--runs", type=int, default=11)
    c.add_argument("--messages", type=int, default=5000)
    c.add_argument("--chunks", type=int, default=2000)
    c.add_argument("--store", default=None)
    c.add_argument("--old", default=None, help="a checkout of the code before this change, or none")
    t = sub.add_parser("throughput")
    t.add_argument("--chunks", type=int, default=1000)
    t.add_argument("--turns", type=int, default=2000)
    t.add_argument("--encoders", default="fp32,int8", help="fp32, int8 (needs the onnx package once)")
    t.add_argument("--scale", default="10000", help="chunk counts for the store path without the model")
    t.add_argument("--old", default=None, help="a checkout of the code before this change, or none")
    t.add_argument("--paths", default="archival,recall", help="archival, recall")
    t.add_argument("--bare-sample", type=int, default=0,
                   help="measure bare encode on this many of the texts, evenly spread (0: all)")
    t.add_argument("--threads", type=int, default=1, help="threads of bare encode and of the encoders alike")
    args = ap.parse_args()
    cold(args) if args.what == "cold" else throughput(args)


if __name__ == "__main__":
    main()
