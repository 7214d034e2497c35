"""``rlmem``, the command line: ``main`` (the parser and the command table), ``common``
(finding and opening the store, printing), ``memory`` (commands over the tiers, adapters of
``memory.ops``), ``store`` (``init``, ``stats``, ``reindex``, ``ingest``, ``import``),
``model`` (``ask``, ``chat``, ``repl``, ``serve``, ``mcp``, trajectories) and
``doctor``.

Rules this package keeps: importing it loads nothing heavy (``rlmem --help`` and text-only
commands never load torch or chromadb); flags take the operations' own defaults; errors print
one line saying what to do. Nothing is re-exported: the console script is
``agents.cli.main:main``.
"""
