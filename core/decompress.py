"""Gzip decompression with a cap on the expanded size, and the error a bad object raises.

A text object can also be had in pieces that end at line ends (``text_pieces``), so that a
large one is parsed while the rest of it is still being decompressed
(``core.flowlog_parser.parse_text_pieces``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from isal import isal_zlib

GZIP_MAGIC = b"\x1f\x8b"


class CorruptObject(Exception):
    """The object's content cannot be read, whoever downloads it: it goes to quarantine."""


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress every gzip member; refuse empty, truncated, corrupt or oversized input.

    ``limit`` caps the expanded size so a decompression bomb cannot exhaust memory.
    """
    chunks = list(inflate(data, limit))
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def inflate(data: bytes, limit: int, piece: int = 0) -> Iterator[bytes]:
    """What ``gunzip`` returns, in chunks of at most ``piece`` bytes (0: a member each),
    decompressed as they are asked for. Raises CorruptObject as ``gunzip`` does, when the
    chunk that shows the problem is asked for."""
    if not data:
        raise CorruptObject("zero-byte object")
    if not data.startswith(GZIP_MAGIC):
        raise CorruptObject("not gzip data (bad magic number)")
    total = 0
    rest = data
    while rest:
        inflater = isal_zlib.decompressobj(wbits=31)
        pending = rest
        while not inflater.eof:
            room = limit - total + 1
            try:
                chunk = inflater.decompress(pending, min(piece, room) if piece else room)
            except isal_zlib.error as exc:
                raise CorruptObject(f"corrupt gzip: {exc}") from None
            total += len(chunk)
            if total > limit:
                raise CorruptObject(f"expands past {limit} bytes (max_object_size): not read")
            pending = inflater.unconsumed_tail
            if not chunk and not pending and not inflater.eof:
                raise CorruptObject("truncated gzip (ends before the end of its stream)")
            if chunk:
                yield chunk
        rest = inflater.unused_data.lstrip(b"\x00")
        if rest and not rest.startswith(GZIP_MAGIC):
            raise CorruptObject("trailing garbage after the gzip stream")


def maybe_gunzip(data: bytes, name: str, limit: int) -> bytes:
    """Decompress when the name or the content says gzip; otherwise check the size cap only."""
    if _gzipped(data, name):
        return gunzip(data, limit)
    _check_size(data, limit)
    return data


def text_pieces(data: bytes, name: str, limit: int, piece: int) -> Iterator[bytes]:
    """``maybe_gunzip``'s text in pieces of about ``piece`` bytes that end at line ends (the
    last as it ends), decompressed as they are asked for."""
    if not _gzipped(data, name):
        _check_size(data, limit)
        yield data
        return
    yield from _at_line_ends(inflate(data, limit, piece))


def _at_line_ends(chunks: Iterable[bytes]) -> Iterator[bytes]:
    carry = b""
    for chunk in chunks:
        data = carry + chunk if carry else chunk
        cut = data.rfind(b"\n") + 1
        if cut == len(data):
            carry = b""
            yield data
        elif cut:
            carry = data[cut:]
            yield data[:cut]
        else:
            carry = data  # (a line longer than a piece: it goes on)
    if carry:
        yield carry


def _gzipped(data: bytes, name: str) -> bool:
    return name.endswith(".gz") or data.startswith(GZIP_MAGIC)


def _check_size(data: bytes, limit: int) -> None:
    if len(data) > limit:
        raise CorruptObject(f"larger than {limit} bytes (max_object_size): not read")
