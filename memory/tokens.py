"""Token estimates: the one ``count_tokens`` of rlm-memory.

Rules this module keeps:

* A token is estimated as 4 characters (``ceil(len(text) / 4)``, 0 for ``""``): the usual
  characters-per-token rule for English with BPE tokenizers. O(1), no tokenizer download.
  It under-counts dense non-Latin text (about one token per character), so callers that
  must not overflow a context window keep a margin; real LM clients report the provider's
  own counts.
* Standard library only: the recall log (a message's default ``tokens``), the LM fakes and
  clients (usage when a server reports none) and the Agent's context budget all read it.
* Words are a different count (``memory.text.chunking.count_words``, words and punctuation
  marks): chunk sizes are given in those.
"""

from __future__ import annotations

__all__ = ["count_tokens"]


def count_tokens(text: str) -> int:
    """Estimated token count of ``text``: about 4 characters per token, 0 for ``""``."""
    if not text:
        return 0
    return (len(text) + 3) // 4
