"""Gzip decompression with a cap on the expanded size, and the error a bad object raises."""

from __future__ import annotations

import re

from isal import isal_zlib

GZIP_MAGIC = b"\x1f\x8b"


class CorruptObject(Exception):
    """The object's content cannot be read, whoever downloads it: it goes to quarantine."""


MIN_WINDOW = 4096  # bytes of input given to a member's inflater at first (after the first)
_NULS = re.compile(rb"\x00*")


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress every gzip member; refuse empty, truncated, corrupt or oversized input.

    ``limit`` caps the expanded size so a decompression bomb cannot exhaust memory. The
    first member is given the whole input (AWS writes one); each later one a window twice
    the size of the member before, grown while it needs more: the input after a member is
    copied by zlib, and copying all of it after each of many small members took time
    growing with the square of the object's size (found by an adversarial test: 160,000
    members, 12 MB, 17 s).
    """
    if not data:
        raise CorruptObject("zero-byte object")
    if not data.startswith(GZIP_MAGIC):
        raise CorruptObject("not gzip data (bad magic number)")
    view = memoryview(data)
    pieces: list[bytes] = []
    offset, window, total = 0, len(data), 0
    while offset < len(data):
        start = offset
        offset, total = _member(view, offset, window, limit, total, pieces)
        offset = _NULS.match(data, offset).end()  # type: ignore[union-attr]  # (padding)
        if offset < len(data) and data[offset:offset + 2] != GZIP_MAGIC:
            raise CorruptObject("trailing garbage after the gzip stream")
        window = max(MIN_WINDOW, 2 * (offset - start))
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _member(view: memoryview, offset: int, window: int, limit: int, total: int,
            pieces: list[bytes]) -> tuple[int, int]:
    """Inflate the member at ``offset`` into ``pieces`` (``total`` bytes so far, at most
    ``limit`` in all); the offset just after it, and the new total."""
    inflater = isal_zlib.decompressobj(wbits=31)
    while not inflater.eof:
        if offset >= len(view):
            raise CorruptObject("truncated gzip (ends before the end of its stream)")
        chunk = view[offset:offset + window]
        offset += len(chunk)
        try:
            piece = inflater.decompress(chunk, limit - total + 1)
        except isal_zlib.error as exc:
            raise CorruptObject(f"corrupt gzip: {exc}") from None
        total += len(piece)
        if total > limit:
            raise CorruptObject(f"expands past {limit} bytes (max_object_size): not read")
        pieces.append(piece)
        window *= 2
    return offset - len(inflater.unused_data), total


def maybe_gunzip(data: bytes, name: str, limit: int) -> bytes:
    """Decompress when the name or the content says gzip; otherwise check the size cap only."""
    if name.endswith(".gz") or data.startswith(GZIP_MAGIC):
        return gunzip(data, limit)
    if len(data) > limit:
        raise CorruptObject(f"larger than {limit} bytes (max_object_size): not read")
    return data
