"""Which embedder a store gets: the runtime (``embed_backend``) and the device (``embed_device``).

Rules this module keeps:

* ``embed_backend``: ``auto`` (the default) runs the packaged model with onnxruntime when it
  and ``tokenizers`` are installed, else with torch; ``onnx`` and ``torch`` force one. Both
  write the same vectors (``memory.vectors.onnx`` checks it), so the choice never makes a
  store re-embed. ``onnx-int8`` runs an int8 copy of the graph (faster, other vectors: a
  store re-embeds into collections of their own). ``hash`` is the dependency-free ``HashEmbedder`` (not a semantic model:
  for tests and demos of the plumbing; its vectors carry their own name).
* ``embed_device``: ``auto`` (the default) uses a CUDA GPU when one is visible, else the CPU;
  ``cpu``, ``cuda`` or ``cuda:N`` ask for one. A GPU that is asked for but absent is a
  warning and the CPU, never a failure: a store stays usable on any machine.
* Choosing imports nothing heavy: the GPU is detected from the driver's files, and the
  runtime is loaded on the first ``embed``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from memory.errors import ConfigError
from memory.vectors.embeddings import Embedder, HashEmbedder, SentenceTransformerEmbedder

__all__ = ["BACKENDS", "cuda_visible", "make_embedder", "resolve_device"]

log = logging.getLogger(__name__)
BACKENDS = ("auto", "onnx", "onnx-int8", "torch", "hash")


def cuda_visible() -> bool:
    """Whether an NVIDIA GPU is visible to this process (driver files; no torch import)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return Path("/proc/driver/nvidia/gpus").is_dir() and any(Path("/proc/driver/nvidia/gpus").iterdir())


def resolve_device(device: str, *, visible: bool | None = None) -> str:
    """``auto`` -> ``cuda`` or ``cpu``; a CUDA device asked for but absent -> ``cpu``, warned."""
    d = (device or "auto").strip().lower()
    if d != "auto" and d != "cpu" and not d.startswith("cuda"):
        raise ConfigError(f"embed_device {device!r}: use auto, cpu, cuda or cuda:N (RLMEM_EMBED_DEVICE)")
    has_gpu = cuda_visible() if visible is None else visible
    if d == "auto":
        return "cuda" if has_gpu else "cpu"
    if d.startswith("cuda") and not has_gpu:
        log.warning("embed_device is %s but no CUDA GPU is visible: embedding on the CPU", device)
        return "cpu"
    return d


def _onnx_cuda() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def make_embedder(cfg: Any) -> Embedder:
    """The embedder for a ``MemoryConfig`` (its model_path, batch size, threads, backend, device)."""
    backend = str(getattr(cfg, "embed_backend", "auto")).lower()
    if backend not in BACKENDS:
        raise ConfigError(f"embed_backend {backend!r}: use auto, onnx, onnx-int8, torch or hash (RLMEM_EMBED_BACKEND)")
    if backend == "hash":
        return HashEmbedder()
    device = resolve_device(cfg.embed_device)
    threads = cfg.embed_threads or None
    if backend != "torch":
        from memory.vectors.onnx import OnnxEmbedder, onnx_available

        if onnx_available() and (device == "cpu" or _onnx_cuda()):
            providers = ["CPUExecutionProvider"]
            if device.startswith("cuda"):
                providers.insert(0, "CUDAExecutionProvider")
            return OnnxEmbedder(cfg.model_path, batch_size=cfg.embed_batch_size, threads=threads,
                                providers=providers, quantize=backend == "onnx-int8")
        if backend in ("onnx", "onnx-int8") and not onnx_available():
            raise ConfigError("embed_backend is onnx but onnxruntime or tokenizers is not installed")
    return SentenceTransformerEmbedder(cfg.model_path, batch_size=cfg.embed_batch_size,
                                       threads=threads, device=device)
