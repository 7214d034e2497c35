"""Every error rlm-memory raises, in one hierarchy.

Catch ``RlmMemoryError`` to catch them all. The tree::

    RlmMemoryError
    ├── UserError                  the caller asked for something invalid (also a ValueError)
    │   ├── ValidationError        malformed input: bad text, bad arguments, bad pattern
    │   ├── QueryError             a search query or regex that cannot be run as given
    │   ├── NotFoundError          unknown message id, chunk id, block label, session, agent
    │   ├── ConfigError            bad configuration (file, environment variable, argument)
    │   │   └── MissingExtraError  an optional part is not installed: names the extra to install
    │   └── BlockError             a working-memory edit that was refused
    │       ├── BlockLimitError    the edit would overflow the block's character limit
    │       └── ReadOnlyBlockError the block is read-only
    ├── StoreError                 the storage layer failed (nothing was half-written)
    │   ├── StoreBusyError         another writer held the store longer than the retry budget
    │   ├── DiskFullError          the disk holding the store has no room left: names the folder
    │   ├── MigrationError         the schema could not be brought up to date
    │   └── IndexError_            the vector index (Chroma) failed or disagrees with SQLite
    ├── LMError                    a language-model call failed
    │   ├── MissingAPIKeyError     no API key: names the environment variable to set
    │   ├── LMTransientError       rate limit / overload / server error after all retries
    │   └── LMResponseError        the model or server answered with something unusable
    ├── SandboxError               the REPL worker failed (not the model's code: the worker)
    │   ├── CellTimeoutError       a cell ran past its wall-clock limit
    │   └── WorkerCrashedError     the worker process died (memory limit, signal, ...)
    └── RLMLimitError              an RLM run hit a limit; carries the partial answer + trajectory
        ├── IterationLimitError
        ├── DepthLimitError
        ├── TokenLimitError
        ├── CostLimitError
        ├── TimeLimitError
        └── ErrorLimitError        too many consecutive failing iterations

Rules: a message says what went wrong *and* what to do about it (which argument, which
variable, which command). Errors never carry secrets (API keys, full database URLs with
passwords).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BlockError",
    "BlockLimitError",
    "CellTimeoutError",
    "ConfigError",
    "CostLimitError",
    "DepthLimitError",
    "DiskFullError",
    "ErrorLimitError",
    "IndexError_",
    "IterationLimitError",
    "LMError",
    "LMResponseError",
    "LMTransientError",
    "MigrationError",
    "MissingAPIKeyError",
    "MissingExtraError",
    "NotFoundError",
    "QueryError",
    "RLMLimitError",
    "ReadOnlyBlockError",
    "RlmMemoryError",
    "SandboxError",
    "StoreBusyError",
    "StoreError",
    "TimeLimitError",
    "TokenLimitError",
    "UserError",
    "ValidationError",
    "WorkerCrashedError",
]


class RlmMemoryError(Exception):
    """Root of every error raised by rlm-memory."""


# --- user errors -------------------------------------------------------------------------


class UserError(RlmMemoryError, ValueError):
    """The caller asked for something invalid. Nothing was changed."""


class ValidationError(UserError):
    """Malformed input (text, arguments, identifiers, patterns)."""


class QueryError(UserError):
    """A search query or regular expression that cannot be run as given."""


class NotFoundError(UserError, LookupError):
    """An id, label, session or agent that does not exist."""


class ConfigError(UserError):
    """Invalid configuration: a file, an environment variable or an argument."""


class MissingExtraError(ConfigError):
    """An optional part of rlm-memory is not installed; the message names the extra."""

    def __init__(self, extra: str, what: str, missing: str | None = None) -> None:
        self.extra = extra
        lacking = f" ({missing} is not installed)" if missing else ""
        super().__init__(
            f"{what} needs the optional extra '{extra}'{lacking}: "
            f"pip install 'rlm-memory[{extra}]'"
        )


class BlockError(UserError):
    """A working-memory block edit was refused."""


class BlockLimitError(BlockError):
    """The edit would make the block longer than its limit."""

    def __init__(self, label: str, limit: int, new_length: int) -> None:
        self.label = label
        self.limit = limit
        self.new_length = new_length
        self.overflow = new_length - limit
        super().__init__(
            f"block {label!r} would hold {new_length} characters, {self.overflow} over its "
            f"limit of {limit}; shorten the text, replace older content, or raise the limit"
        )


class ReadOnlyBlockError(BlockError):
    """The block is read-only."""

    def __init__(self, label: str) -> None:
        self.label = label
        super().__init__(f"block {label!r} is read-only and cannot be edited")


# --- store errors ------------------------------------------------------------------------


class StoreError(RlmMemoryError):
    """The storage layer failed. The operation was rolled back; stored data is intact."""


class StoreBusyError(StoreError):
    """Another writer held the store for longer than the retry budget."""


class DiskFullError(StoreError):
    """The disk holding the store is full; the write in hand was rolled back (or, for vectors,
    left queued). The message names the folder; free some space and retry."""


class MigrationError(StoreError):
    """The database schema could not be brought up to date."""


class IndexError_(StoreError):  # trailing underscore: do not shadow the builtin IndexError
    """The vector index failed or disagrees with the source of truth; run ``rlmem reindex``."""


# --- LM errors ---------------------------------------------------------------------------


class LMError(RlmMemoryError):
    """A language-model call failed."""


class MissingAPIKeyError(LMError):
    """No API key was found."""

    def __init__(self, variable: str, provider: str = "") -> None:
        self.variable = variable
        who = f" for {provider}" if provider else ""
        super().__init__(
            f"no API key{who}: set the {variable} environment variable "
            f"(or pass api_key=... to the client)"
        )


class LMTransientError(LMError):
    """Rate limit, overload or server error that persisted through every retry."""


class LMResponseError(LMError):
    """The model or server answered with something unusable."""


# --- sandbox errors ----------------------------------------------------------------------


class SandboxError(RlmMemoryError):
    """The REPL worker failed (as opposed to the code it ran)."""


class CellTimeoutError(SandboxError):
    """A cell ran past its wall-clock limit; the worker was replaced."""


class WorkerCrashedError(SandboxError):
    """The worker process died; the worker was replaced."""


# --- RLM limit errors --------------------------------------------------------------------


class RLMLimitError(RlmMemoryError):
    """An RLM run hit one of its limits.

    ``partial_answer`` holds the best answer available when the limit hit (may be None) and
    ``trajectory`` the iterations so far, so a caller can still show or save them.
    """

    limit_name = "limit"

    def __init__(
        self,
        message: str,
        *,
        partial_answer: str | None = None,
        trajectory: Any = None,
        result: Any = None,
    ) -> None:
        super().__init__(message)
        self.partial_answer = partial_answer
        self.trajectory = trajectory
        self.result = result


class IterationLimitError(RLMLimitError):
    limit_name = "max_iterations"


class DepthLimitError(RLMLimitError):
    limit_name = "max_depth"


class TokenLimitError(RLMLimitError):
    limit_name = "max_tokens"


class CostLimitError(RLMLimitError):
    limit_name = "max_cost_usd"


class TimeLimitError(RLMLimitError):
    limit_name = "max_seconds"


class ErrorLimitError(RLMLimitError):
    limit_name = "max_consecutive_errors"
