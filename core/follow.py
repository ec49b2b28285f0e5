"""Following a running collector from another process (docs/attach.md): each new state it
publishes, the alerts that state created or changed, and the segments it added.

The collector writes, per commit, the alerts it wrote as a delta file; a follower reads the
files a new manifest names that the previous one did not, and keeps the alerts whose
(id, revision) it has not seen: a whole rewrite of the table (after pruning) adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.store import publication
from core.store.segments import is_segment_name


@dataclass
class Update:
    generation: int
    alerts: pa.Table | None  # alerts new or changed since the previous update
    segments: list[str] = field(default_factory=list)  # segment files added since


class Follower:
    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.directory = state_dir / publication.DIRECTORY
        self.generation: int | None = None
        self._files: dict[str, set[str]] = {}
        self._seen: set[tuple[str, int]] = set()
        self.segments: set[str] = set()

    def poll(self) -> Update | None:
        """The changes of the newest state, if it is newer than the last one seen; None
        otherwise, or while no readable publication exists (a state whose files cannot be
        read is not taken: the next poll tries again)."""
        try:
            manifest = publication.current(self.state_dir)
            generation = int(manifest["generation"])  # type: ignore[call-overload]
            if generation == self.generation:
                return None
            files: dict[str, list[str]] = manifest["files"]  # type: ignore[assignment]
            new = {table: [name for name in names if name not in self._files.get(table, ())]
                   for table, names in files.items()}
            alerts = self._read_alerts(new.get("alerts", []))
            listed = self._read_segments(files.get("segments", []))
            changed = self._unseen(alerts)  # (last: a file of another shape changes nothing)
        except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
            return None
        first = self.generation is None
        added = [] if self.generation is None else self._added(self.generation, generation,
                                                              manifest, listed)
        self.generation = generation
        self._files = {table: set(names) for table, names in files.items()}
        self.segments = set(listed)
        if first:  # what was there before this follower started is not news
            return Update(generation, None)
        return Update(generation, changed, added)

    def _added(self, last: int, generation: int, newest: dict[str, object],
               listed: list[str]) -> list[str]:
        """The segments the commits since the last poll added. Compaction rewrites segments
        without adding flows, so each state in between is looked at, not only the newest
        (found by an adversarial test: a commit followed by the poll's compaction before
        the next look, or published whole, was never reported, and ``watch --headless``
        left out its parity alerts). A state removed meanwhile (a follower stopped for
        minutes) counts as a commit: its flows may be reported twice, never lost. Only the
        manifests there are read (a planted generation of 10**12 is one gap, not a loop)."""
        steps = publication.generations_between(self.state_dir, last, generation)
        known, added = set(self.segments), set()
        gap = len(steps) < generation - last - 1
        for step in steps:
            try:
                manifest = publication.manifest_of(self.state_dir, step)
                files: dict[str, list[str]] = manifest["files"]  # type: ignore[assignment]
                names = self._read_segments(files.get("segments", []))
            except (OSError, ValueError, KeyError, pa.ArrowException):
                gap = True  # (its commits are counted against the newest state)
                continue
            added |= self._new(manifest, names, known)
            known = set(names)
        added |= set(listed) - known if gap else self._new(newest, listed, known)
        # (one merged since is still there to read: retired segments stay for a while)
        return sorted(added)

    @staticmethod
    def _new(manifest: dict[str, object], names: list[str], known: set[str]) -> set[str]:
        """Segments in ``names`` not ``known`` before, when ``manifest``'s state is a
        commit's (published as deltas or whole)."""
        return set(names) - known if manifest.get("reason") == "commit" else set()

    def _read_alerts(self, names: list[str]) -> pa.Table | None:
        tables = [pq.read_table(self.directory / name) for name in names]
        return pa.concat_tables(tables, promote_options="permissive") if tables else None

    def _read_segments(self, names: list[str]) -> list[str]:
        if not names:
            return sorted(self.segments)
        listed = pq.read_table(self.directory / names[-1], columns=["name"])["name"].to_pylist()
        if not all(isinstance(name, str) and is_segment_name(name) for name in listed):
            raise ValueError("a segments file naming something else than segments")
        return listed

    def _unseen(self, rows: pa.Table | None) -> pa.Table | None:
        """The alert rows whose (id, revision) no earlier update held."""
        if rows is None:
            return None
        missing = {"id", "revision", "level"} - set(rows.column_names)  # (what readers use)
        if missing:
            raise KeyError(f"an alerts file without {sorted(missing)}")
        keys = list(zip(rows["id"].to_pylist(), rows["revision"].to_pylist(), strict=True))
        fresh = [key not in self._seen for key in keys]
        self._seen.update(keys)  # (nothing above changed it: a KeyError leaves it as it was)
        changed = rows.filter(pa.array(fresh, pa.bool_()))
        return changed if changed.num_rows else None


def at_least(table: pa.Table | None, level: int) -> pa.Table | None:
    if table is None:
        return None
    kept = table.filter(pc.greater_equal(table["level"], level))
    return kept if kept.num_rows else None
