"""The REPL worker: the code that runs behind the sandbox boundary.

Rules this package keeps:

* Standard library only, and nothing here imports anything outside this package: inside the
  boundary only this directory and the interpreter exist (``rlm_core`` and ``rlm_core.sandbox``
  are empty namespace packages there), so the worker never loads what the parent imports.
* The parent imports ``wire`` and ``bpf`` from here too, so both sides speak one format and
  the seccomp program is written once.
"""
