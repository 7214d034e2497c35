"""Exact Okapi BM25 over a bounded candidate set, for the SQLite full-text leg.

Rules this module keeps:

* FTS5's ``bm25()`` uses the IDF ``log((N - n + 0.5) / (n + 0.5))`` and clamps it to 1e-6
  when it is not positive: a word in half the messages or more adds nothing, so a message that
  matches the rare word *and* the question's other words ranks no higher than one with the
  rare word alone. On conversational data that loses the turn (measured:
  ``bench/text_leg.py``). Candidates found by FTS5 are therefore re-scored here with the IDF
  ``log(1 + (N - n + 0.5) / (n + 0.5))`` (positive for every word, as in Lucene), ``k1 = 1.2``,
  ``b = 0.75``, and a phrase repeated in the query counted as often as it is repeated.
* Tokens are what the index's ``unicode61 remove_diacritics 2`` tokenizer makes: runs of
  letters, numbers and private-use characters, lower-cased, diacritics removed (canonical
  decomposition: ``x²`` stays ``x²``, as in the index). A phrase of
  several tokens counts where its tokens appear in a row.
* ``N`` and the mean length come from FTS5's own totals record and each document's length
  from its size table (both O(1) per row, exact); term frequencies are counted in the first
  ``TF_CHARS`` characters of a candidate, so one huge message cannot make a query slow.
* The caller gives document frequencies: exact where a bounded scan counted them, estimated
  from the density of the newest matches otherwise.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence

import regex

__all__ = ["K1", "TF_CHARS", "B", "Scorer", "tokens", "varint"]

K1 = 1.2
B = 0.75
TF_CHARS = 100_000

_TOKEN = regex.compile(r"[\p{L}\p{N}\p{Co}]+")
_ASCII_TOKEN = regex.compile(r"[a-z0-9]+")
_MARKS = regex.compile(r"\p{Mn}+")


def tokens(text: str) -> list[str]:
    """The tokens FTS5's ``unicode61 remove_diacritics 2`` makes of ``text``."""
    if text.isascii():
        return _ASCII_TOKEN.findall(text.lower())
    return _TOKEN.findall(_MARKS.sub("", unicodedata.normalize("NFD", text.lower())))


def varint(blob: bytes, pos: int) -> tuple[int, int]:
    """One SQLite varint (big-endian, 7 bits a byte, the ninth byte whole) at ``pos``."""
    value = 0
    for i in range(8):
        c = blob[pos + i]
        value = (value << 7) | (c & 0x7F)
        if c < 0x80:
            return value, pos + i + 1
    return (value << 8) | blob[pos + 8], pos + 9


class Scorer:
    """BM25 of documents for a query's phrases, given the collection's statistics."""

    def __init__(
        self, phrases: Mapping[str, float], df: Mapping[str, float], n_docs: int, avg_len: float
    ) -> None:
        self.n = max(1, n_docs)
        self.avg = avg_len if avg_len > 0 else 1.0
        self.terms: list[tuple[tuple[str, ...], float]] = []
        for phrase, times in phrases.items():
            toks = tuple(tokens(phrase))
            if not toks:
                continue
            n = min(float(df.get(phrase, 0.0)), float(self.n))
            idf = math.log(1.0 + (self.n - n + 0.5) / (n + 0.5))
            self.terms.append((toks, idf * times))
        # Single words (the usual case) are counted by one regex over the text instead of
        # tokenizing all of it: a match bounded by non-token characters is a whole token.
        self._weights = {seq[0]: w for seq, w in self.terms if len(seq) == 1}
        self._rx = None
        if self._weights and len(self._weights) == len(self.terms):
            alt = "|".join(regex.escape(w) for w in sorted(self._weights, key=len, reverse=True))
            self._rx = regex.compile(rf"(?<![\p{{L}}\p{{N}}\p{{Co}}])(?:{alt})(?![\p{{L}}\p{{N}}\p{{Co}}])")

    def score(self, text: str, length: int) -> float:
        norm = K1 * (1 - B + B * max(length, 1) / self.avg)
        total = 0.0
        if self._rx is not None:
            body = text[:TF_CHARS].lower()
            if not body.isascii():
                body = _MARKS.sub("", unicodedata.normalize("NFD", body))
            for word, tf in Counter(self._rx.findall(body)).items():
                total += self._weights[word] * tf * (K1 + 1) / (tf + norm)
            return total
        toks = tokens(text[:TF_CHARS])
        counts = Counter(toks)
        for seq, weight in self.terms:
            tf = counts[seq[0]] if len(seq) == 1 else _run_count(toks, seq)
            if tf:
                total += weight * tf * (K1 + 1) / (tf + norm)
        return total


def _run_count(toks: Sequence[str], seq: tuple[str, ...]) -> int:
    first, m = seq[0], len(seq)
    return sum(1 for i, t in enumerate(toks) if t == first and tuple(toks[i : i + m]) == seq)
