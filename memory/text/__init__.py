"""Text handling the recall log and the archival store share: input checks and filters
(``query``), bounded full-text search, snippets and grep over any ``FtsSource`` (``fts``),
chunking and recall passages (``chunking``), relative dates in queries (``temporal``).

Rules this package keeps: it knows no tier's tables (a tier passes the ``FtsSource`` it
searches), raises only ``ValidationError``/``QueryError`` for bad input, and imports no
embedding or vector code. Nothing is re-exported: import the modules.
"""
