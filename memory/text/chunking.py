"""Token-aware chunking with overlap, and the file discovery that feeds ``ingest``.

Rules this module keeps:

* Tokens are approximated without a tokenizer download: a word or a single punctuation mark
  counts as one token (close to a WordPiece count for English prose and code).
* Chunks break at paragraph, then line, then sentence boundaries where they can, and never
  exceed ``chunk_tokens`` unless one token is longer; consecutive chunks share about
  ``overlap`` tokens so a fact split across a boundary is still found whole in one of them.
* ``passages`` cuts a message into the pieces it is embedded as: sentences (at ``.!?`` and line
  breaks), a sentence shorter than ``min_words`` joined to the next, one longer than
  ``max_words`` cut into windows, at most ``max_passages`` of them. A text of one passage is
  embedded whole, exactly as it reads. A text that opens with a speaker label (``"Caroline: "``,
  one to three capitalised words and a colon) keeps the label on every passage.
* Files are read as UTF-8 with undecodable bytes replaced; binary files (a NUL byte in the
  first 8 KiB) and unknown extensions are skipped, never half-ingested.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from memory.errors import ValidationError

__all__ = [
    "DEFAULT_EXTS", "MAX_PASSAGES", "TextChunk", "chunk_text", "count_words", "iter_files", "passages",
    "read_text_file",
]

DEFAULT_EXTS = frozenset(
    {
        ".md", ".markdown", ".txt", ".rst", ".text", ".json", ".jsonl", ".yaml", ".yml",
        ".toml", ".ini", ".cfg", ".csv", ".html", ".xml", ".py", ".js", ".ts", ".tsx",
        ".jsx", ".java", ".c", ".h", ".cc", ".cpp", ".hpp", ".go", ".rs", ".rb", ".sh",
        ".sql", ".kt", ".swift", ".php", ".cs", ".scala", ".lua", ".r", ".tex",
    }
)
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_BREAKS = (re.compile(r"\n\s*\n"), re.compile(r"\n"), re.compile(r"(?<=[.!?])\s+"))
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
# "Caroline: ", "Dr. Smith: ", "Mary-Jane O'Neil: ": who says the rest of the message.
_LABEL = re.compile(r"([^\W\d_][\w.'-]{0,20}(?: [^\W\d_][\w.'-]{0,20}){0,2}):[ \t]+")
MAX_PASSAGES = 64


def count_words(text: str) -> int:
    """How many words and punctuation marks ``text`` has: the unit chunk sizes are given in
    (not ``memory.tokens.count_tokens``, the model-token estimate)."""
    return len(_TOKEN.findall(text))


@dataclass(frozen=True)
class TextChunk:
    text: str
    position: int  # index of the chunk within its source
    start: int  # character offset in the source text


def _token_spans(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _TOKEN.finditer(text)]


def chunk_text(text: str, *, chunk_tokens: int = 256, overlap: int = 32) -> list[TextChunk]:
    """Split ``text`` into chunks of at most ``chunk_tokens`` tokens overlapping by ``overlap``."""
    if chunk_tokens < 8:
        raise ValidationError(f"chunk_tokens must be >= 8, got {chunk_tokens}")
    if not 0 <= overlap < chunk_tokens // 2:
        raise ValidationError(f"overlap must be in [0, chunk_tokens/2), got {overlap}")
    spans = _token_spans(text)
    if not spans:
        return []
    if len(spans) <= chunk_tokens:
        return [TextChunk(text.strip(), 0, spans[0][0])]
    # Preferred break points: token indices that start a paragraph/line/sentence.
    starts = [s for s, _ in spans]
    strength = [0] * len(spans)
    for level, pat in enumerate(_BREAKS):
        for m in pat.finditer(text):
            idx = _first_token_at(starts, m.end())
            if idx < len(spans):
                strength[idx] = max(strength[idx], len(_BREAKS) - level)
    chunks: list[TextChunk] = []
    begin = 0
    while begin < len(spans):
        end = min(begin + chunk_tokens, len(spans))
        if end < len(spans):
            # Break at the strongest boundary in the last half of the window.
            lo = begin + chunk_tokens // 2
            best = max(range(lo, end + 1), key=lambda i: (strength[i] if i < len(spans) else 0, i))
            if strength[best] > 0:
                end = best
        piece = text[spans[begin][0] : spans[end - 1][1]].strip()
        chunks.append(TextChunk(piece, len(chunks), spans[begin][0]))
        if end >= len(spans):
            break
        begin = max(end - overlap, begin + 1)
    return chunks


def passages(
    text: str, *, min_words: int = 6, max_words: int = 120, max_passages: int = MAX_PASSAGES
) -> list[str]:
    """The pieces ``text`` is embedded as, in order: its sentences, a sentence of fewer than
    ``min_words`` words joined to the next, one of more than ``max_words`` cut into windows of
    that many words; at most ``max_passages`` (the rest of a longer text is left to full-text
    search). A text that makes one passage is returned whole: ``[text]``.

    One vector for a whole message blurs a fact mentioned in passing among other talk (and
    the model reads only its first 256 word pieces); a vector per sentence keeps it sharp, and
    a search scores the message by its best passage.

    A message that opens with a speaker label (``"Caroline: "``: one to three words that
    start with a capital letter, then a colon) has the label put before each of its passages,
    not the first alone: a question that names the speaker then meets every sentence on the
    same terms, and the first sentence no longer wins for the name alone (docs/benchmarks.md).
    """
    label = _LABEL.match(text)
    if label is not None and all(w[0].isupper() for w in label.group(1).split()):
        body = _split(text[label.end() :], min_words, max_words, max_passages)
        return [text] if len(body) <= 1 else [label.group(0) + p for p in body]
    out = _split(text, min_words, max_words, max_passages)
    return [text] if len(out) <= 1 else out


def _split(text: str, min_words: int, max_words: int, max_passages: int) -> list[str]:
    out: list[str] = []
    pending: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        words = sentence.split()
        if not words:
            continue
        for a in range(0, len(words), max_words):
            pending.extend(words[a : a + max_words])
            if len(pending) >= min_words:
                out.append(" ".join(pending))
                pending = []
        if len(out) > max_passages:
            break
    if pending:
        if out and len(out) <= max_passages:
            out[-1] = out[-1] + " " + " ".join(pending)
        else:
            out.append(" ".join(pending))
    return out[:max_passages]


def _first_token_at(starts: list[int], offset: int) -> int:
    import bisect

    return bisect.bisect_left(starts, offset)


def read_text_file(path: Path) -> str | None:
    """The file's text, or None for a binary file."""
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def iter_files(paths: Iterable[str | Path], exts: Iterable[str] | None = None) -> Iterator[tuple[Path, bool]]:
    """``(file, wanted)`` for every file under ``paths``; ``wanted`` is False for skipped ones."""
    allowed = {e if e.startswith(".") else f".{e}" for e in (exts or DEFAULT_EXTS)}
    for p in paths:
        root = Path(p).expanduser()
        if not root.exists():
            raise ValidationError(f"no such file or directory: {root}")
        if root.is_file():
            yield root, root.suffix.lower() in allowed
            continue
        for f in sorted(root.rglob("*")):
            if any(part.startswith(".") for part in f.relative_to(root).parts):
                continue  # hidden files and VCS directories
            if f.is_file():
                yield f, f.suffix.lower() in allowed
