"""The encoder (MiniLM, or mpnet) run by onnxruntime: the same vectors as sentence-transformers, without torch.

Rules this module keeps:

* The graph files (the export from the weights, offline, checked against the torch model; the
  int8 copy; onnxruntime's optimised form) are made once by ``memory.vectors.onnx_graphs``
  and cached under the user cache directory (``$XDG_CACHE_HOME/rlmem/onnx``, or
  ``cache_dir``), keyed by the weights file's path, size and modification time, made under a
  file lock so that two processes never make or read half a graph.
* ``name`` is the vector space, not the runtime: an fp32 graph writes the vectors
  ``SentenceTransformerEmbedder`` writes (checked), so both carry ``st:<model dir>`` and a
  store switches between them without re-embedding. Anything that changes the vectors
  (quantisation) must carry another name.
* ``fused=True`` runs onnxruntime's BERT fusions of the graph (``onnx_graphs.bert_fused``),
  checked to write the plain graph's vectors, so an fp32 embedder keeps its name; with
  ``quantize`` it runs the int8 copy quantised from the fused graph (``QAttention``), whose
  vectors differ from the plain graph's int8 copy: it is named ``st:<dir>+int8-fused``. Off
  by default: measured on one and two threads, neither was reliably faster over the whole
  store path (docs/benchmarks.md). If the fused graph cannot be made, or its cached file does
  not load, the fp32 embedder runs the plain export instead, with a warning; the int8 one
  removes the damaged file and makes it again (another graph would write other vectors under
  its name).
* ``quantize=True`` runs the int8 copy (dynamic quantisation of the matrix products, per
  channel; needs the ``onnx`` package, the ``int8`` extra). Its vectors differ (cosine about
  0.99), so it is named ``st:<dir>+int8``: a store keeps them in collections of their own and
  re-embeds when the encoder changes.
* After the one-time export, embedding imports only numpy, onnxruntime and tokenizers: a cold
  process never loads torch. Texts are embedded in batches sorted by length, so short texts
  are not padded to the length of long ones.
* On the CPU a session loads the saved optimised graph with optimisation off. A process that
  embeds only a few texts at a time (a search's query) loads it with weight prepacking off,
  which starts the session in milliseconds; the first larger call loads a prepacked session,
  which embeds batches faster, and uses it from then on. The last few small calls' vectors
  are kept (a hybrid search embeds its query once per tier).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memory.errors import ConfigError
from memory.vectors.embeddings import _check_texts, default_model_path
from memory.vectors.onnx_graphs import (
    bert_fused,
    export_onnx,
    fused_path,
    optimized_graph,
    pooled,
    quantize,
    session,
)
from memory.vectors.onnx_graphs import tokenizer as load_tokenizer

__all__ = ["OnnxEmbedder", "export_onnx", "int8_graph", "onnx_available", "onnx_cache_dir", "optimized_graph"]

log = logging.getLogger(__name__)
_EXPORT_VERSION = "1"
# Calls of at most this many texts run on the quick-to-load session (see the module notes).
QUERY_TEXTS = 4


def onnx_available() -> bool:
    """Whether onnxruntime and tokenizers can be imported (both come with chromadb)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "tokenizers"))


def onnx_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/rlmem/onnx`` (``~/.cache/rlmem/onnx`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "rlmem" / "onnx"


def _weights(model_path: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_path / name).is_file():
            return model_path / name
    raise ConfigError(f"no model.safetensors in {model_path}: not a sentence-transformers model directory")


def _cache_key(model_path: Path) -> str:
    w = _weights(model_path)
    st = w.stat()
    raw = f"{_EXPORT_VERSION}|{w.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return f"{model_path.name}-{hashlib.sha256(raw.encode()).hexdigest()[:16]}"


def int8_graph(fp32: OnnxEmbedder) -> Path:
    """The int8 graph next to ``fp32``'s (made once; needs the ``onnx`` package)."""
    q = OnnxEmbedder(fp32.model_path, cache_dir=fp32.cache_dir, quantize=True)
    return q._ensure_graph()


class OnnxEmbedder:
    """A sentence-transformers model (mean pooling, normalised: MiniLM, mpnet) run by onnxruntime.

    ``graph`` is an ONNX file to use as is; by default it is exported from ``model_path`` on
    first use and cached (see the module notes). ``threads`` is onnxruntime's intra-op
    thread count. If the export fails, the torch model is used instead, with a warning.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        batch_size: int = 32,
        threads: int | None = 1,
        cache_dir: str | Path | None = None,
        graph: str | Path | None = None,
        max_chars: int = 8192,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        quantize: bool = False,
        fused: bool = False,
    ) -> None:
        path = Path(model_path).expanduser() if model_path is not None else default_model_path()
        if not path.is_dir() or not (path / "tokenizer.json").is_file():
            raise ConfigError(
                f"embedding model directory {str(path)!r} has no tokenizer.json: set model_path "
                "(or RLMEM_MODEL_PATH) to a sentence-transformers model directory"
            )
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        self.model_path = path
        self.batch_size = batch_size
        self.threads = threads
        self.max_chars = max_chars
        self.providers = list(providers)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else onnx_cache_dir()
        self.quantize = quantize
        self.fused = fused and graph is None
        self._graph = Path(graph) if graph is not None else None
        self._session: Any = None
        self._quick: Any = None
        self._recent: dict[tuple[str, ...], list[list[float]]] = {}
        self._run: tuple[Path, bool] | None = None  # the graph a session loads; optimised or not
        self._tokenizer: Any = None
        self._fallback: Any = None
        self._dim: int | None = None
        self._lock = threading.Lock()
        self._recent_lock = threading.Lock()

    @property
    def name(self) -> str:
        if not self.quantize:
            return f"st:{self.model_path.name}"
        return f"st:{self.model_path.name}" + ("+int8-fused" if self.fused else "+int8")

    @property
    def dim(self) -> int:
        if self._dim is None:
            data = json.loads((self.model_path / "config.json").read_text())
            self._dim = int(data["hidden_size"])
        return self._dim

    @property
    def graph_path(self) -> Path:
        """The plain ONNX file of this embedder (exported on first use when missing); with
        ``fused``, the file it runs is made from it (``_ensure_graph``)."""
        if self._graph is not None:
            return self._graph
        return self.cache_dir / _cache_key(self.model_path) / ("model.int8.onnx" if self.quantize else "model.onnx")

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.model_path)
        return self._tokenizer

    def _ensure_graph(self) -> Path:
        """The graph to run, made first when missing (export, BERT fusions, int8 copy)."""
        graph = self.graph_path
        if not self.fused and graph.is_file():
            return graph
        graph.parent.mkdir(parents=True, exist_ok=True)
        with open(graph.parent / ".export.lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # one exporter; the others wait and reuse
            fp32 = graph.with_name("model.onnx")
            if not fp32.is_file():
                log.info("exporting %s to ONNX (once) at %s", self.model_path, fp32)
                export_onnx(self.model_path, fp32)
            if self.fused:
                fused = fused_path(fp32)
                if not fused.is_file():
                    try:
                        cfg = json.loads((self.model_path / "config.json").read_text())
                        bert_fused(fp32, fused, heads=int(cfg["num_attention_heads"]), hidden=int(cfg["hidden_size"]))
                    except Exception as exc:
                        if self.quantize:
                            raise
                        log.warning("no BERT-fused graph for %s (%s): running the plain graph", fp32, exc)
                        return fp32
                if not self.quantize:
                    return fused
                fp32, graph = fused, fused_path(fp32, int8=True)
            if self.quantize and not graph.is_file():
                quantize(fp32, graph)
        return graph

    def load(self) -> None:
        """Open the session for batches now (exporting the graph first if it is missing)."""
        self._open(quick=False)

    def _open(self, *, quick: bool) -> Any:
        """The session to run (``quick``: the one for a few texts, unless the batch one is
        open), or None when embedding falls back to torch (see the module notes)."""
        with self._lock:
            if self._session is not None or self._fallback is not None:
                return self._session
            if quick and self._quick is not None:
                return self._quick
            if self._run is None:
                try:
                    graph = self._ensure_graph()
                except Exception as exc:
                    if self.quantize:  # the torch model would write other vectors under this name
                        raise ConfigError(f"no int8 ONNX graph for {self.model_path}: {exc}") from exc
                    log.warning("no ONNX graph for %s (%s): embedding with torch instead", self.model_path, exc)
                    from memory.vectors.embeddings import SentenceTransformerEmbedder

                    self._fallback = SentenceTransformerEmbedder(
                        self.model_path, batch_size=self.batch_size, threads=self.threads, max_chars=self.max_chars
                    )
                    return None
                self._run = (graph, False)
                if self._graph is None and self.providers == ["CPUExecutionProvider"]:
                    try:
                        self._run = (optimized_graph(graph), True)
                    except Exception as exc:  # e.g. a read-only cache: optimise at every start
                        log.warning("could not save onnxruntime's optimised graph next to %s: %s", graph, exc)
            sess = self._load_session(quick)
            if quick:
                self._quick = sess
            else:
                self._session, self._quick = sess, None
            _ = self.tokenizer
            return sess

    def _load_session(self, quick: bool) -> Any:
        """A session of ``self._run``; a cached file that does not load is replaced by the
        graph it was made from (see the module notes)."""
        assert self._run is not None
        try:
            return session(self._run[0], self.threads, self.providers, optimized=self._run[1], prepack=not quick)
        except Exception as exc:
            if self._run[1]:
                bad, self._run = self._run[0], (self._ensure_graph(), False)
                log.warning("the optimised graph %s does not load (%s): using %s", bad, exc, self._run[0])
                return self._load_session(quick)
            if not self.fused or self._run[0] == self.graph_path:
                raise
            bad = self._run[0]
            if self.quantize:  # made again: only this graph writes the vectors of this name
                log.warning("the int8 graph %s does not load (%s): making it again", bad, exc)
                bad.unlink(missing_ok=True)
                self._run = (self._ensure_graph(), False)
                return session(self._run[0], self.threads, self.providers, prepack=not quick)
            log.warning("the BERT-fused graph %s does not load (%s): using %s", bad, exc, self.graph_path)
            self._run = (self.graph_path, False)
            return session(self._run[0], self.threads, self.providers, prepack=not quick)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        items = _check_texts(texts)
        if not items:
            return []
        if len(items) > QUERY_TEXTS:
            return self.embed_array(items).tolist()  # type: ignore[no-any-return]
        # A hybrid search embeds its query once per tier: the last few answers are kept.
        key = tuple(items)
        got = self._recent.get(key)
        if got is None:
            got = self.embed_array(items).tolist()
            with self._recent_lock:
                self._recent[key] = got
                while len(self._recent) > 8:
                    self._recent.pop(next(iter(self._recent)))
        return [list(v) for v in got]

    def embed_array(self, texts: Sequence[str]) -> Any:
        """The vectors as one ``(len(texts), dim)`` float32 array."""
        import numpy as np
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        sess = self._open(quick=len(texts) <= QUERY_TEXTS)
        if sess is None:
            return np.asarray(self._fallback.embed(list(texts)), dtype=np.float32)
        return pooled(sess, self.tokenizer, [t[: self.max_chars] for t in texts], self.batch_size)
