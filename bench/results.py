"""Where the benchmarks' reports go: printed, and appended to bench/RESULTS.md."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def publish(report: str, write: bool = True) -> None:
    """Print ``report`` and (unless ``write`` is false: ``--no-write``) append it."""
    print(report)
    if write:
        with open(RESULTS, "a", encoding="utf-8") as out:
            out.write(report.rstrip("\n") + "\n")
