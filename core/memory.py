"""Handing freed memory back to the system."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util


def release_free_memory() -> None:
    """Return the C heap's free pages to the system (glibc's ``malloc_trim``; elsewhere
    nothing). Freed numpy arrays below glibc's mmap threshold stay in the heap, counted in
    the process's RSS, until this: after the index is built that was about 120 MB
    (docs/app.md, "Bounded memory")."""
    name = ctypes.util.find_library("c")
    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(name).malloc_trim(0)
