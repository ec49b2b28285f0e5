"""Gzip decompression with a cap on the expanded size, and the error a bad object raises."""

from __future__ import annotations

from isal import isal_zlib

GZIP_MAGIC = b"\x1f\x8b"


class CorruptObject(Exception):
    """The object's content cannot be read, whoever downloads it: it goes to quarantine."""


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress every gzip member; refuse empty, truncated, corrupt or oversized input.

    ``limit`` caps the expanded size so a decompression bomb cannot exhaust memory.
    """
    if not data:
        raise CorruptObject("zero-byte object")
    if not data.startswith(GZIP_MAGIC):
        raise CorruptObject("not gzip data (bad magic number)")
    pieces: list[bytes] = []
    total = 0
    rest = data
    while rest:
        inflater = isal_zlib.decompressobj(wbits=31)
        try:
            piece = inflater.decompress(rest, limit - total + 1)
        except isal_zlib.error as exc:
            raise CorruptObject(f"corrupt gzip: {exc}") from None
        total += len(piece)
        if total > limit:
            raise CorruptObject(f"expands past {limit} bytes (max_object_size): not read")
        if not inflater.eof:
            raise CorruptObject("truncated gzip (ends before the end of its stream)")
        pieces.append(piece)
        rest = inflater.unused_data.lstrip(b"\x00")
        if rest and not rest.startswith(GZIP_MAGIC):
            raise CorruptObject("trailing garbage after the gzip stream")
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def maybe_gunzip(data: bytes, name: str, limit: int) -> bytes:
    """Decompress when the name or the content says gzip; otherwise check the size cap only."""
    if name.endswith(".gz") or data.startswith(GZIP_MAGIC):
        return gunzip(data, limit)
    if len(data) > limit:
        raise CorruptObject(f"larger than {limit} bytes (max_object_size): not read")
    return data
