"""vpcwatch core: ingest, parse and store VPC Flow Logs and CloudTrail. Never imports Textual."""

from __future__ import annotations

import contextlib
import os

import pyarrow as pa


def _use_jemalloc() -> None:
    """Arrow's buffers from jemalloc rather than its default, mimalloc: with mimalloc the
    first parse of a large object in a process spent a second in the kernel (0.99 s of
    system time for 1,000,000 records, against 0.11 s with jemalloc; bench/RESULTS.md),
    which a one-shot ``vpcwatch scan`` pays in full. ``ARROW_DEFAULT_MEMORY_POOL`` still
    chooses, when set; a pyarrow built without jemalloc keeps its default."""
    if "ARROW_DEFAULT_MEMORY_POOL" in os.environ:
        return
    with contextlib.suppress(NotImplementedError):
        pa.set_memory_pool(pa.jemalloc_memory_pool())


_use_jemalloc()
