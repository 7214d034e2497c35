"""Archival memory: chunks of documents and notes in SQL with their vectors in Chroma.

``schema`` holds the migrations, ``Chunk`` and the SQL helpers; ``store`` the
``ArchivalStore`` (insert, ingest, update, delete, reindex); ``search`` chunk search and grep
over a ``ChunkSource`` protocol, so store and search do not import each other. SQL is the
source of truth; Chroma can be rebuilt from it. Nothing is re-exported (``memory`` re-exports
``ArchivalStore``).
"""
