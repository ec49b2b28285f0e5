"""Which days a poll lists (core/listing_plan.py): cases found by an adversarial test of
time, retention and relisting on 2026-12-06."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from core.config import BucketConfig, GeneralConfig
from core.listing_plan import plan
from core.store.ledger import ListingMarks

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
GENERAL = GeneralConfig(lookback=48 * 3600.0, retention=7 * 86400.0)


def entry(after: date | None = None, **settings: object) -> BucketConfig:
    return BucketConfig("vpcflow", "logs", only_logs_after=after, **settings)  # type: ignore[arg-type]


def test_a_backfill_starts_no_earlier_than_retention() -> None:
    """Older days' rows are dropped at the poll's end and their ledger entries forgotten:
    a backfill not finished then read them again (stored twice with a newer object)."""
    days = plan(entry(NOW.date() - timedelta(days=10)), GENERAL, ListingMarks(), NOW)
    assert days.backfill_from == days.first == NOW.date() - timedelta(days=7)


def test_only_logs_after_moved_earlier_backfills_the_days_never_listed() -> None:
    marks = ListingMarks(backfilled_through=NOW.date() - timedelta(days=3),
                         listed_from=NOW.date() - timedelta(days=5))
    again = plan(entry(NOW.date() - timedelta(days=6)), GENERAL, marks, NOW)
    assert again.backfill_from == NOW.date() - timedelta(days=6)
    same = plan(entry(NOW.date() - timedelta(days=5)), GENERAL, marks, NOW)
    assert same.backfill_from is None  # (done: nothing before the first day listed)


def test_entries_of_one_bucket_for_other_accounts_keep_marks_of_their_own() -> None:
    """Two entries of one bucket and path, for two accounts (two roles), shared one backfill
    mark: the one added later never read its older days."""
    plain = entry()
    assert plain.marks_key == plain.label  # (an existing store keeps its marks)
    keys = {entry(aws_account_id=("111111111111",)).marks_key,
            entry(aws_account_id=("222222222222",)).marks_key,
            entry(regions=("us-east-1",)).marks_key,
            entry(path_suffix="x").marks_key, plain.marks_key}
    assert len(keys) == 5


def test_no_listing_reaches_the_days_whose_ledger_retention_forgot() -> None:
    """(A review: a retention raised from 7 to 30 days relisted and backfilled days whose
    ledger entries the 7 days had forgotten: their objects were read, and stored, twice.)"""
    longer = GeneralConfig(lookback=48 * 3600.0, retention=30 * 86400.0, relist_interval=3600.0)
    kept_from = NOW.date() - timedelta(days=8)
    marks = ListingMarks(listed_from=NOW.date() - timedelta(days=20),
                         relisted_at=NOW.timestamp() - 7200, kept_from=kept_from)
    days = plan(entry(NOW.date() - timedelta(days=25)), longer, marks, NOW)
    assert days.relist_from == days.backfill_from == days.first == kept_from


def test_an_entrys_marks_under_the_name_an_older_version_gave_them_are_read(
        tmp_path: Path) -> None:
    from core.store import open_store

    old = entry(aws_account_id=("111111111111",))
    with open_store(tmp_path / "state") as store:
        store.set_listing_marks(old.label, ListingMarks(listed_from=date(2026, 11, 1)))
        assert store.listing_marks(old.marks_key).listed_from is None
        assert store.listing_marks(old.marks_key, old.label).listed_from == date(2026, 11, 1)
        store.prune(7 * 86400.0, date(2026, 12, 4), now=NOW.timestamp())
        assert store.listing_marks(old.marks_key).kept_from == date(2026, 11, 28)
