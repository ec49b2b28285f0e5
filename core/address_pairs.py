"""The traffic index's address pairs: an id for each (lower, higher) address id pair its rows
hold, and the conversations' per-pair sums (``core.traffic_index``, docs/app.md).

Keys (low id << 32 | high id) are kept sorted, with each key's pair id beside them, so a
batch of rows finds its pairs by binary search and only new pairs are merged in (sorting
every key again per batch cost seconds). Ids are dense, so the conversations' sums are
plain arrays indexed by pair id, kept between views: a view writes and resets only the
pairs its rows touch. When rows leave, the pairs no row uses any more leave too and the
others are renumbered (:meth:`forget_unused`), so the tables follow the rows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from core import traffic_kernels as kernels

T = TypeVar("T")
# A pair's bytes: its key, id and ends, and the conversations' sums (bytes, flows, slot).
PAIR_COST = 8 + 4 + 8 + (8 + 4 + 4)
Sums = tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.int32]]


class AddressPairs:
    def __init__(self) -> None:
        self._keys = np.empty(0, np.int64)  # sorted (low id << 32 | high id)
        self._id_of_key = np.empty(0, np.int32)  # the pair id of each key
        self.ends = np.empty((0, 2), np.int32)  # low and high address id of each pair
        self._sums: Sums = _empty_sums()
        self._sums_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.ends)

    def ids(self, src: NDArray[np.int32], dst: NDArray[np.int32]) -> NDArray[np.int32]:
        """The pair id of each row (-1 when an address is missing); new pairs get new ids."""
        low, high = np.minimum(src, dst).astype(np.int64), np.maximum(src, dst)
        pairs = np.full(len(src), -1, np.int32)
        valid = low > 0
        encoded = pc.dictionary_encode(pa.array(low[valid] << 32 | high[valid]))  # (hashing)
        unsorted = encoded.dictionary.to_numpy()
        by_key = np.argsort(unsorted)  # (searching sorted keys is several times faster)
        unique = unsorted[by_key]
        where = np.searchsorted(self._keys, unique)
        known = where < len(self._keys)
        known[known] = self._keys[where[known]] == unique[known]
        ids = np.empty(len(unique), np.int32)
        ids[known] = self._id_of_key[where[known]]
        fresh = unique[~known]
        ids[~known] = np.arange(len(self.ends), len(self.ends) + len(fresh))
        self.ends = np.concatenate(
            [self.ends, np.stack([fresh >> 32, fresh & 0xFFFFFFFF], 1).astype(np.int32)])
        self._keys = np.insert(self._keys, where[~known], fresh)
        self._id_of_key = np.insert(self._id_of_key, where[~known], ids[~known])
        inverse = np.empty(len(unique), np.int32)
        inverse[by_key] = np.arange(len(unique), dtype=np.int32)  # dictionary index -> sorted
        ids = ids[inverse]
        pairs[valid] = ids[encoded.indices.to_numpy()]
        return pairs

    def forget_unused(self, pair: NDArray[np.int32]) -> None:
        """Drop the pairs no row of ``pair`` (the index's pair column) uses and renumber the
        others, in that column too (in place). No sum may run meanwhile (Explorer.refresh
        waits for them before a sync)."""
        used = kernels.used_ids(pair, len(self.ends))
        if used.all():
            return
        renumbered = np.cumsum(used, dtype=np.int32) - 1  # each old id's new one
        kernels.renumber(pair, renumbered)
        kept = used[self._id_of_key]
        self._keys = self._keys[kept]
        self._id_of_key = renumbered[self._id_of_key[kept]]
        self.ends = self.ends[used]
        self._sums = _empty_sums()  # (made again, smaller, by the next sum)

    def summed(self, add: Callable[[Sums], T]) -> T:
        """``add(sums)`` with the per-pair sums (zero, zero, -1 at rest; ``add`` leaves them
        so), one caller at a time."""
        with self._sums_lock:
            count = len(self.ends)
            if len(self._sums[0]) < count:
                self._sums = (np.zeros(count, np.int64), np.zeros(count, np.int32),
                              np.full(count, -1, np.int32))
            return add(self._sums)


def _empty_sums() -> Sums:
    return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32)
