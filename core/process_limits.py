"""A bound on what a process may allocate, for one that runs nothing but user SQL
(``vpcwatch query``).

DuckDB's memory limit covers its operators, not a single value that a function builds:
``SELECT len(range(200000000))`` grew to 14 GB, past the sandbox's 1 GB and deaf to its
timeout (found by an adversarial test), and on the collector's host the kernel may then
kill the collector rather than the query. Under this bound DuckDB's allocation fails
instead, and the query ends with DuckDB's own out-of-memory error.
"""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def data_growth_bounded(extra: int) -> Iterator[None]:
    """While inside, the process's data (``RLIMIT_DATA``, its soft limit) may grow by at most
    ``extra`` bytes from what it is now; the limit is put back after. Nothing changes where
    the size cannot be read (not Linux), or when the limit is tighter already."""
    used = _data_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    bound = None if used is None else used + extra
    if hard != resource.RLIM_INFINITY and bound is not None:
        bound = min(bound, hard)
    if bound is None or (soft != resource.RLIM_INFINITY and soft <= bound):
        yield
        return
    resource.setrlimit(resource.RLIMIT_DATA, (bound, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def _data_bytes() -> int | None:
    """What ``RLIMIT_DATA`` counts now (``VmData``), or None."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    sizes = [int(line.split()[1]) * 1024 for line in lines if line.startswith("VmData:")]
    return sizes[0] if sizes else None
