"""Numpy columns that grow and shrink in place, for the traffic index.

Concatenating a batch onto arrays, or filtering them with a mask, makes new arrays while
the old ones still exist: twice the index's memory for a moment (measured: 3.4 GB to index
14 M flows, about 1 GB of them). These columns reserve capacity ahead (the whole build at
once when its size is known, else a quarter more each time), write batches into it, and
keep rows in place one column at a time, so the extra memory is one column's copy at most.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

Columns = dict[str, NDArray[np.generic]]
GROWTH = 1.25


class GrowingColumns:
    def __init__(self, dtypes: Mapping[str, type[np.generic]]):
        self._data: Columns = {name: np.empty(0, dtype) for name, dtype in dtypes.items()}
        self.rows = 0

    @property
    def capacity(self) -> int:
        return len(next(iter(self._data.values())))

    def view(self) -> Columns:
        """The columns' rows (views of the storage: valid until the next change)."""
        return {name: array[:self.rows] for name, array in self._data.items()}

    def reserve(self, extra: int) -> None:
        """Room for ``extra`` more rows (one column copied at a time when it must move)."""
        needed = self.rows + extra
        if needed <= self.capacity:
            return
        capacity = max(needed, int(self.capacity * GROWTH))
        for name, array in self._data.items():
            grown = np.empty(capacity, array.dtype)
            grown[:self.rows] = array[:self.rows]
            self._data[name] = grown

    def append(self, batch: Mapping[str, NDArray[np.generic]]) -> None:
        count = len(next(iter(batch.values())))
        self.reserve(count)
        for name, array in self._data.items():
            array[self.rows:self.rows + count] = batch[name]
        self.rows += count

    def dtype(self, name: str) -> np.dtype[np.generic]:
        return self._data[name].dtype

    def widen(self, name: str, dtype: type[np.generic]) -> None:
        """Give column ``name`` a wider type (its values kept)."""
        self._data[name] = self._data[name].astype(dtype)

    @property
    def row_bytes(self) -> int:
        return sum(array.itemsize for array in self._data.values())

    def truncate(self, rows: int) -> None:
        """Forget the rows from ``rows`` on."""
        self.rows = min(self.rows, rows)

    def sort_from(self, first: int, key: str) -> None:
        """Order the rows from ``first`` on by column ``key`` (stable), a column at a time."""
        order = np.argsort(self._data[key][first:self.rows], kind="stable")
        for array in self._data.values():
            array[first:self.rows] = array[first:self.rows][order]

    def keep(self, mask: NDArray[np.bool_]) -> int:
        """Keep the rows where ``mask`` is true, in order; returns how many were dropped."""
        kept = int(mask.sum())
        for array in self._data.values():
            array[:kept] = array[:self.rows][mask]  # (a copy of the kept part of one column)
        dropped, self.rows = self.rows - kept, kept
        return dropped
