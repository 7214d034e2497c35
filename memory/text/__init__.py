"""Text handling the recall log and the archival store share: input checks and filters
and the recall filter (``query``), grep patterns (``patterns``), bounded full-text search
and snippets over any ``FtsSource`` (``fts``), grep over one (``grep``), BM25 re-scoring
(``bm25``), chunking and recall passages (``chunking``), what ``ingest`` reads (``files``),
relative dates in queries (``temporal``).

Rules this package keeps: it knows no tier's tables (a tier passes the ``FtsSource`` it
searches), raises only ``ValidationError``/``QueryError`` for bad input, and imports no
embedding or vector code. Nothing is re-exported: import the modules.
"""
