"""The wire format between the parent and the REPL worker: JSON with tagged types, framed.

Rules this module keeps:

* Nothing that crosses can run code when it is read: frames are JSON text, decoded by the
  standard ``json`` module into plain values. Types JSON lacks travel as one-key-plus-value
  tagged objects (``{"$": "dt", "v": "2026-12-02T04:00:00"}``) from a fixed list; an unknown
  tag is an error, never a lookup.
* Every frame is bounded: ``dumps`` refuses values nested deeper than ``max_depth`` or larger
  than ``max_bytes`` once encoded; ``loads`` refuses the same, and the frame readers check the
  8-byte length header against their limit before reading and then grow their buffer only as
  bytes really arrive, so a header that merely claims 2 GiB allocates nothing.
* Round trips keep what the memory views need: tuples, bytes, sets, datetimes (naive and
  aware), dates, times, timedeltas, Decimals, UUIDs, huge ints, lone surrogates, dicts with
  non-string keys. Subclasses of dict, list, str, int and float cross as the base type.
* Decoding is linear in the frame: sets and non-string-keyed dicts whose members' hashes
  collide in bulk (ints hash by value, so collisions are easy to craft) are refused before
  they are built.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import math
import socket
import struct
import uuid
from collections.abc import Callable
from typing import Any

__all__ = [
    "HEADER",
    "MAX_DEPTH",
    "WireError",
    "dumps",
    "loads",
    "recv_frame",
    "send_frame",
]

HEADER = struct.Struct(">Q")
MAX_DEPTH = 100
_CHUNK = 1 << 20
_TAG = "$"
_BIG_INT_BITS = 12_000  # ~3,600 digits: below CPython's 4,300-digit str() limit
_MAX_SAME_HASH = 64  # real sets and dicts hold distinct members: only crafted frames get near this


class WireError(ValueError):
    """A value that cannot cross, or bytes that are not a valid frame."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _encode(obj: Any, depth: int, max_depth: int) -> Any:
    if depth > max_depth:
        raise WireError(f"value nested deeper than {max_depth} levels")
    if obj is None or obj is True or obj is False:
        return obj
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, int):
        if obj.bit_length() > _BIG_INT_BITS:
            return {_TAG: "i", "v": hex(int(obj))}
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    d = depth + 1
    if isinstance(obj, dict):
        if all(type(k) is str for k in obj) and _TAG not in obj:
            return {k: _encode(v, d, max_depth) for k, v in obj.items()}
        return {_TAG: "m", "v": [[_encode(k, d, max_depth), _encode(v, d, max_depth)] for k, v in obj.items()]}
    if isinstance(obj, list):
        return [_encode(v, d, max_depth) for v in obj]
    if isinstance(obj, tuple):
        return {_TAG: "t", "v": [_encode(v, d, max_depth) for v in obj]}
    if isinstance(obj, bytes):
        return {_TAG: "b", "v": _b64(obj)}
    if isinstance(obj, bytearray):
        return {_TAG: "ba", "v": _b64(bytes(obj))}
    if isinstance(obj, frozenset):
        return {_TAG: "fs", "v": [_encode(v, d, max_depth) for v in obj]}
    if isinstance(obj, set):
        return {_TAG: "s", "v": [_encode(v, d, max_depth) for v in obj]}
    if isinstance(obj, datetime.datetime):
        return {_TAG: "dt", "v": obj.isoformat()}
    if isinstance(obj, datetime.date):
        return {_TAG: "d", "v": obj.isoformat()}
    if isinstance(obj, datetime.time):
        return {_TAG: "tm", "v": obj.isoformat()}
    if isinstance(obj, datetime.timedelta):
        return {_TAG: "td", "v": [obj.days, obj.seconds, obj.microseconds]}
    if isinstance(obj, decimal.Decimal):
        return {_TAG: "dec", "v": str(obj)}
    if isinstance(obj, uuid.UUID):
        return {_TAG: "u", "v": str(obj)}
    if isinstance(obj, complex):
        return {_TAG: "c", "v": [obj.real, obj.imag]}
    raise WireError(
        f"{type(obj).__name__} is not plain data; pass str, int, float, bool, None, bytes, "
        "list, tuple, dict, set, datetime, Decimal or UUID values across the sandbox boundary"
    )


def dumps(obj: Any, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> bytes:
    """Encode ``obj``; ``WireError`` when it is not plain data, too deep or too large."""
    try:
        text = json.dumps(_encode(obj, 0, max_depth), ensure_ascii=True, separators=(",", ":"))
    except RecursionError:
        raise WireError(f"value nested deeper than {max_depth} levels") from None
    if len(text) > max_bytes:
        raise WireError(f"value is {len(text):,} bytes encoded, over the {max_bytes:,}-byte limit")
    return text.encode("ascii")


def _pairs_to_dict(pairs: list[Any]) -> dict[Any, Any]:
    if not isinstance(pairs, list) or not all(isinstance(kv, list) and len(kv) == 2 for kv in pairs):
        raise WireError("malformed mapping")
    _no_collisions([kv[0] for kv in pairs])
    return {kv[0]: kv[1] for kv in pairs}


def _members(values: Any) -> list[Any]:
    if not isinstance(values, list):
        raise WireError("malformed set")
    _no_collisions(values)
    return values


def _no_collisions(keys: list[Any]) -> None:
    """Refuse keys whose hashes collide in bulk before any set or dict is built of them.

    Ints (and floats, Decimals, tuples of them) hash by value: ``k * (2**61 - 1)`` all hash
    alike, and a set of n of them costs n**2 / 2 comparisons (a 1 MiB frame: about a
    minute of the reader's CPU). Counting equal hashes is linear: the hashes are ints that
    hash to themselves, so they cannot collide a second time.
    """
    counts: dict[int, int] = {}
    for key in keys:
        try:
            h = hash(key)
        except TypeError:
            raise WireError(f"unhashable {type(key).__name__} used as a key or set member") from None
        c = counts[h] = counts.get(h, 0) + 1
        if c > _MAX_SAME_HASH:
            raise WireError(f"more than {_MAX_SAME_HASH} keys or set members with the same hash")


def _td(v: list[Any]) -> datetime.timedelta:
    days, seconds, micro = v
    return datetime.timedelta(days=days, seconds=seconds, microseconds=micro)


def _big_int(v: str) -> int:
    if not isinstance(v, str) or len(v) > 10_000_000:
        raise WireError("malformed int")
    return int(v, 16)  # power-of-two bases are linear and exempt from the digit limit


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "t": tuple,
    "m": _pairs_to_dict,
    "b": lambda v: base64.b64decode(v, validate=True),
    "ba": lambda v: bytearray(base64.b64decode(v, validate=True)),
    "s": lambda v: set(_members(v)),
    "fs": lambda v: frozenset(_members(v)),
    "dt": datetime.datetime.fromisoformat,
    "d": datetime.date.fromisoformat,
    "tm": datetime.time.fromisoformat,
    "td": _td,
    "dec": decimal.Decimal,
    "u": uuid.UUID,
    "c": lambda v: complex(float(v[0]), float(v[1])),
    "i": _big_int,
}


def _untag(obj: dict[str, Any]) -> Any:
    if _TAG not in obj:
        return obj
    tag = obj[_TAG]
    decode = _DECODERS.get(tag) if isinstance(tag, str) and len(obj) == 2 and "v" in obj else None
    if decode is None:
        raise WireError(f"unknown tagged value {str(tag)[:40]!r}")
    try:
        return decode(obj["v"])
    except WireError:
        raise
    except Exception as exc:
        raise WireError(f"malformed {tag!r} value: {exc}") from None


def _depth_ok(value: Any, max_depth: int) -> bool:
    """Iterative depth check (no recursion of our own on untrusted structure)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if d > max_depth:
            return False
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
            stack.extend((k, d + 1) for k in v if not isinstance(k, str | int | float))
        elif isinstance(v, list | tuple | set | frozenset):
            stack.extend((x, d + 1) for x in v)
    return True


def loads(data: bytes | bytearray | memoryview, *, max_depth: int = MAX_DEPTH) -> Any:
    """Decode one frame body; ``WireError`` for anything but well-formed plain data."""
    raw = bytes(data)
    try:
        value = json.loads(raw, object_hook=_untag, parse_constant=_constant)
    except WireError:
        raise
    except RecursionError:
        raise WireError(f"message nested deeper than {max_depth} levels") from None
    except (ValueError, TypeError) as exc:
        raise WireError(f"not a valid message ({str(exc)[:200]})") from None
    # Nesting costs at least one bracket per level: only messages with many brackets need
    # the walk that measures it.
    if raw.count(b"[") + raw.count(b"{") > max_depth and not _depth_ok(value, max_depth):
        raise WireError(f"message nested deeper than {max_depth} levels")
    return value


def _constant(name: str) -> float:
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]


# --- frames over a blocking socket (the worker's side) -------------------------------------


def send_frame(sock: socket.socket, body: bytes) -> None:
    sock.sendall(HEADER.pack(len(body)))
    sock.sendall(body)


def _read_exact(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), _CHUNK))
        if not chunk:
            raise EOFError("the channel was closed")
        buf += chunk
    return buf


def recv_frame(sock: socket.socket, max_bytes: int) -> bytearray:
    """One frame body from a blocking socket; the buffer grows only with what arrives."""
    (n,) = HEADER.unpack(_read_exact(sock, HEADER.size))
    if n > max_bytes:
        raise WireError(f"frame of {n:,} bytes is over the {max_bytes:,}-byte limit")
    return _read_exact(sock, n)
