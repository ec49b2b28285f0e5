"""The soak (`make soak`): tests/soak.py at full size, results appended to bench/RESULTS.md.

At least 20,000 objects in two buckets (one holding flow logs and CloudTrail under two
[[bucket]] entries, behind an organization folder; the other in the Hive layout), read
through the fault proxy (5% SlowDown on GET and LIST, 1% resets mid-body, stalls past the
read timeout) by a collector killed 5 times at random moments and once at each kill point
(after a segment is written and before its commit, during compaction, during pruning), with
late objects arriving behind keys already read and past the lookback. Then one clean poll:
the store must equal that of an uninterrupted clean run, with peak RSS under 1 GB.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from results import publish

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--random-kills", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    from tests.soak import KILL_POINTS, run_soak
    from tui.embedded_s3 import start_s3, use_emulator_credentials

    use_emulator_credentials()
    server = start_s3()
    try:
        with tempfile.TemporaryDirectory(prefix="vpcwatch-soak-") as tmp:
            report = run_soak(server.url, Path(tmp), args.objects, args.random_kills,
                              KILL_POINTS, say=lambda text: print(text, flush=True))
    finally:
        server.stop()
    verdict = "PASSED" if not report.mismatches and report.peak_rss_mb < 1024 else "FAILED"
    lines = [
        f"## Soak, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
        f"Command: `make soak` (`python bench/soak.py --objects {args.objects} "
        f"--random-kills {args.random_kills}`) on {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}.", "",
        "| measure | figure |", "|---|---|",
        f"| objects put (with late ones) | {report.objects:,} |",
        f"| kills (-9) | {len(report.kills)}: {', '.join(report.kills)} |",
        f"| faults injected | {', '.join(f'{k} {v}' for k, v in sorted(report.faults.items()))} |",
        f"| records / events / alerts stored | {report.records:,} / {report.events:,} / "
        f"{report.alerts:,} |",
        f"| differences from an uninterrupted clean run | "
        f"{'; '.join(report.mismatches) or 'none (0 duplicates, 0 lost)'} |",
        f"| peak RSS of a collector | {report.peak_rss_mb:.0f} MB (target < 1,024) |",
        f"| wall time | {report.seconds:.0f} s (target ≤ 600) |",
        f"| verdict | **{verdict}** |", "",
    ]
    text = "\n".join(lines)
    publish(text, write=not args.no_write)
    return 0 if verdict == "PASSED" else 1


if __name__ == "__main__":
    raise SystemExit(main())
