"""The soak, reduced to fit `make test` (tests/soak.py has the whole story; `make soak` runs
it at full size): 2,000 objects, a kill at a random moment and one between a segment's
write and its commit, faults on every GET and LIST; then the store equals a clean run's."""

from __future__ import annotations

from pathlib import Path

from tests.soak import run_soak


def test_a_reduced_soak_ends_with_exactly_a_clean_runs_store(
        tmp_path: Path, s3_server: object) -> None:
    report = run_soak(s3_server.url, tmp_path, objects=2000,  # type: ignore[attr-defined]
                      random_kills=1, kill_points=("segment-written",))
    assert report.mismatches == []
    assert sorted(report.kills) == ["random", "segment-written"]
    assert report.faults.get("slowdown", 0) > 0 and report.faults.get("list slowdown", 0) > 0
    assert report.records > 0 and report.events > 0 and report.alerts > 0
    assert report.peak_rss_mb < 1024
