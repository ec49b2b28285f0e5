"""Network and S3 faults through a proxy: nothing transient quarantines, nothing is read twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests import flowgen
from tests.conftest import Bucket, collect_once, query, write_config
from tests.faultproxy import FaultProxy, Faults
from tests.test_collect import NOW
from tui.cli import main

A, B = "111111111111", "222222222222"
DENIED = f"AWSLogs/{B}/vpcflowlogs/eu-west-1/"


@pytest.fixture
def proxy(s3_server: object) -> Iterator[FaultProxy]:
    faults = Faults(
        by_marker={"_slowdown": ("slowdown", 2), "_err500": ("error500", 2),
                   "_reset": ("reset", 2), "_stall": ("stall", 1)},
        denied_prefixes=(DENIED,),
    )
    proxy = FaultProxy(s3_server.url, faults).start()  # type: ignore[attr-defined]
    yield proxy
    proxy.stop()


def test_every_object_ends_done_exactly_once_despite_faults(
    tmp_path: Path, bucket: Bucket, proxy: FaultProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    expected: dict[str, int] = {}
    markers = ["_slowdown", "_err500", "_reset", "_stall", "_plain", "_plain2"]
    for n, marker in enumerate(markers):
        obj = flowgen.flow_object(flowgen.V2, 2000, seed=n, account=A)
        key = flowgen.flow_key("", A, "us-east-1", NOW, n).replace(".log.gz", f"{marker}.log.gz")
        bucket.put(key, obj.gz())
        expected[key] = obj.records
    bucket.put(flowgen.flow_key("", B, "eu-west-1", NOW, 99), flowgen.flow_object(
        flowgen.V2, 10).gz())
    config = write_config(tmp_path, [{"type": "vpcflow", "name": bucket.name,
                                      "endpoint_url": proxy.url}],
                          read_timeout="1s", connect_timeout="1s")

    code = main(["collect", "--config", str(config), "--once", "--json"])
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])

    assert proxy.injected == {"slowdown": 2, "error500": 2, "reset": 2, "stall": 1,
                              "denied": proxy.injected["denied"]}
    assert proxy.injected["denied"] >= 1
    assert summary["objects"] == {"done": len(markers), "quarantined": 0, "blocked": 0,
                                  "pending": 0, "skipped": 0}
    today = datetime.now(UTC)
    days = sorted({(today - timedelta(hours=h)).strftime("%Y/%m/%d") for h in (0, 24, 48)})
    assert summary["blocked_prefixes"] == [f"s3://{bucket.name}/{DENIED}{day}/" for day in days]
    assert DENIED in captured.err
    blocked = query(tmp_path / "state", "SELECT prefix FROM prefixes WHERE status = 'blocked'")
    assert sorted(row[0] for row in blocked) == [f"{DENIED}{day}/" for day in days]
    assert code == 0
    stored = dict(query(tmp_path / "state", "SELECT object_key, count(*) FROM flows GROUP BY 1"))
    attempts = dict(query(tmp_path / "state", "SELECT key, attempts FROM objects"))
    assert stored == expected
    # botocore retries 503 and 500 itself; a body cut short or stalled is retried by vpcwatch
    retried = {key: attempts[key] > 1 for key in expected}
    assert retried == {key: "_reset" in key or "_stall" in key for key in expected}


def test_list_calls_stay_proportional_to_the_lookback_window(
    tmp_path: Path, bucket: Bucket, proxy: FaultProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    for account in (A, B):
        for region in ("us-east-1", "eu-central-1"):
            for age in range(0, 40, 3):  # six weeks of history, one object every third day
                when = NOW - timedelta(days=age)
                bucket.put(flowgen.flow_key("", account, region, when, age),
                           flowgen.flow_object(flowgen.V2, 5).gz())
    config = write_config(tmp_path, [{"type": "vpcflow", "name": bucket.name,
                                      "endpoint_url": proxy.url}], lookback="48h")
    code, summary = collect_once(config, capsys)
    days = len({(datetime.now(UTC) - timedelta(hours=h)).date() for h in (0, 24, 48)})
    # AWSLogs/ once, each account's regions once, then one list per (account, region, day)
    assert proxy.requests["list"] == 1 + 2 + 2 * 2 * days
    assert code == 0 and summary["objects"]["done"] == 2 * 2  # only today's objects (age 0)


def test_an_object_denied_to_us_is_blocked_then_read_when_access_returns(
    tmp_path: Path, bucket: Bucket, s3_server: object, capsys: pytest.CaptureFixture[str]
) -> None:
    faults = Faults(denied_gets=("_secret",))
    proxy = FaultProxy(s3_server.url, faults).start()  # type: ignore[attr-defined]
    try:
        secret = flowgen.flow_key("", A, "us-east-1", NOW, 1).replace(".log.gz", "_secret.log.gz")
        bucket.put(secret, flowgen.flow_object(flowgen.V2, 40).gz())
        bucket.put(flowgen.flow_key("", A, "us-east-1", NOW, 2), flowgen.flow_object(
            flowgen.V2, 60).gz())
        config = write_config(tmp_path, [{"type": "vpcflow", "name": bucket.name,
                                          "endpoint_url": proxy.url}])
        _, first = collect_once(config, capsys)
        assert first["objects"]["blocked"] == 1 and first["records"] == 60
        faults.denied_gets = ()
        _, second = collect_once(config, capsys)
        assert second["objects"]["done"] == 1 and second["records"] == 40
    finally:
        proxy.stop()


def test_iam_role_is_assumed_through_sts(
    tmp_path: Path, bucket: Bucket, proxy: FaultProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket.put(flowgen.flow_key("", A, "us-east-1", NOW, 1), flowgen.flow_object(
        flowgen.V2, 25).gz())
    config = write_config(tmp_path, [{
        "type": "vpcflow", "name": bucket.name, "endpoint_url": bucket.url,
        "iam_role_arn": f"arn:aws:iam::{A}:role/vpcwatch-reader", "external_id": "ext-1",
        "sts_endpoint": proxy.url}])
    code, summary = collect_once(config, capsys)
    assert code == 0
    assert summary["records"] == 25
    assert proxy.requests["sts"] == 1


def test_only_logs_after_backfills_once_and_retries_what_was_left_unfinished(
    tmp_path: Path, bucket: Bucket, s3_server: object, capsys: pytest.CaptureFixture[str]
) -> None:
    faults = Faults(denied_gets=("_denied",))
    proxy = FaultProxy(s3_server.url, faults).start()  # type: ignore[attr-defined]
    try:
        old = NOW - timedelta(days=10)
        bucket.put(flowgen.flow_key("", A, "us-east-1", old, 1), flowgen.flow_object(
            flowgen.V2, 21).gz())
        denied = flowgen.flow_key("", A, "us-east-1", old, 2).replace(".log.gz", "_denied.log.gz")
        bucket.put(denied, flowgen.flow_object(flowgen.V2, 22).gz())
        bucket.put(flowgen.flow_key("", A, "us-east-1", NOW, 3), flowgen.flow_object(
            flowgen.V2, 23).gz())
        after = (NOW - timedelta(days=12)).date().isoformat()
        config = write_config(tmp_path, [{"type": "vpcflow", "name": bucket.name,
                                          "endpoint_url": proxy.url,
                                          "only_logs_after": after}], lookback="48h")
        _, first = collect_once(config, capsys)
        assert first["records"] == 21 + 23 and first["objects"]["blocked"] == 1

        faults.denied_gets = ()
        lists_before = proxy.requests["list"]
        _, second = collect_once(config, capsys)
        assert second["records"] == 22 and second["objects"]["done"] == 1
        days = len({(datetime.now(UTC) - timedelta(hours=h)).date() for h in (0, 24, 48)})
        assert proxy.requests["list"] - lists_before == 1 + 1 + days  # no second backfill
    finally:
        proxy.stop()


def test_two_entries_sharing_a_bucket_retry_an_unfinished_object_once(
    tmp_path: Path, bucket: Bucket, s3_server: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """config.example.toml's layout: flow logs and CloudTrail in one bucket, two entries.
    An object blocked before the lookback is retried from the ledger by its own entry only
    (it was read by both: done 2, 80 rows and 4 ledger rows for one 40-record object)."""
    faults = Faults(denied_gets=("_denied",))
    proxy = FaultProxy(s3_server.url, faults).start()  # type: ignore[attr-defined]
    try:
        old = NOW - timedelta(days=5)
        denied = flowgen.flow_key("", A, "us-east-1", old, 2).replace(".log.gz", "_denied.log.gz")
        bucket.put(denied, flowgen.flow_object(flowgen.V2, 40).gz())
        after = (NOW - timedelta(days=12)).date().isoformat()
        config = write_config(tmp_path, [
            {"type": "vpcflow", "name": bucket.name, "endpoint_url": proxy.url,
             "only_logs_after": after},
            {"type": "cloudtrail", "name": bucket.name, "endpoint_url": proxy.url,
             "only_logs_after": after}], lookback="48h")
        _, first = collect_once(config, capsys)
        assert first["objects"]["blocked"] == 1

        faults.denied_gets = ()
        _, second = collect_once(config, capsys)
        assert second["objects"]["done"] == 1 and second["records"] == 40
        state = tmp_path / "state"
        assert query(state, "SELECT count(*) FROM flows") == [(40,)]
        assert query(state, "SELECT count(*) FROM objects") == [(1,)]
    finally:
        proxy.stop()


def test_a_bug_while_reading_an_object_quarantines_it_with_its_traceback(
    tmp_path: Path, bucket: Bucket, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not an S3 or network error: it is not retried for ever as a transient one. (The bug
    is injected by replacing the parser: a real one cannot be written on purpose.)"""
    import core.collector

    bug_key = flowgen.flow_key("", A, "us-east-1", NOW, 1).replace(".log.gz", "_bug.log.gz")
    bucket.put(bug_key, flowgen.flow_object(flowgen.V2, 10).gz())
    bucket.put(flowgen.flow_key("", A, "us-east-1", NOW, 2), flowgen.flow_object(
        flowgen.V2, 30).gz())
    real = core.collector.read_object

    def buggy(ref, *args):  # type: ignore[no-untyped-def]
        if "_bug" in ref.key:
            raise KeyError("a bug")
        return real(ref, *args)

    monkeypatch.setattr(core.collector, "read_object", buggy)
    config = write_config(tmp_path, [{"type": "vpcflow", "name": bucket.name,
                                      "endpoint_url": bucket.url}])
    main(["collect", "--config", str(config), "--once", "--json"])
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["objects"]["quarantined"] == 1 and summary["records"] == 30
    assert "internal error" in captured.err and "Traceback" in captured.err
    [(status, error, attempts)] = query(tmp_path / "state", "SELECT status, last_error, "
                                        "attempts FROM objects WHERE key LIKE '%_bug%'")
    assert (status, error, attempts) == ("quarantined", "internal error: KeyError: 'a bug'", 1)


def test_listing_faults_are_retried_and_a_failed_listing_never_reads_as_empty(
    tmp_path: Path, bucket: Bucket, s3_server: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """Throttling, a 500, a reset and a stall on ListObjectsV2 of A's day: retried, and every
    object read. B's day listing throttled on every try: the poll says it could not list
    that prefix (exit 1), B's object is not in the ledger (never 'done' for an empty
    listing), and the next poll, with the throttling over, reads it."""
    day = NOW.strftime("%Y/%m/%d")
    a_day, b_day = f"{A}/vpcflowlogs/us-east-1/{day}", f"{B}/vpcflowlogs/us-east-1/{day}"
    faults = Faults(list_markers={a_day + "/": ("slowdown", 1), f"{a_day}": ("reset", 1),
                                  f"us-east-1/{day}/": ("stall", 1), b_day: ("slowdown", 10**6)},
                    stall_seconds=5)
    proxy = FaultProxy(s3_server.url, faults).start()  # type: ignore[attr-defined]
    try:
        for n in range(3):
            bucket.put(flowgen.flow_key("", A, "us-east-1", NOW, n), flowgen.flow_object(
                flowgen.V2, 10 + n).gz())
        b_key = flowgen.flow_key("", B, "us-east-1", NOW, 9)
        bucket.put(b_key, flowgen.flow_object(flowgen.V2, 40).gz())
        config = write_config(tmp_path, [{"type": "vpcflow", "name": bucket.name,
                                          "endpoint_url": proxy.url}],
                              read_timeout="1s", connect_timeout="1s", lookback="1h")
        code, first = collect_once(config, capsys)
        assert proxy.injected["list slowdown"] > 1 and proxy.injected["list reset"] == 1
        assert proxy.injected["list stall"] == 1
        assert first["records"] == 10 + 11 + 12 and first["objects"]["done"] == 3
        assert code == 1 and any(b_day in e and "SlowDown" in e for e in first["errors"])
        state = tmp_path / "state"
        assert query(state, "SELECT count(*) FROM objects WHERE key = ?", [b_key]) == [(0,)]

        faults.list_markers = {}
        code, second = collect_once(config, capsys)
        assert (code, second["records"], second["objects"]["done"]) == (0, 40, 1)
    finally:
        proxy.stop()


def test_an_object_failing_every_try_stays_pending_then_is_read(
    tmp_path: Path, bucket: Bucket, s3_server: object, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.collector

    monkeypatch.setattr(core.collector, "BACKOFF_BASE", 0.01)  # the path, not the waiting
    faults = Faults(by_marker={"_flaky": ("reset", 10**6)})
    proxy = FaultProxy(s3_server.url, faults).start()  # type: ignore[attr-defined]
    try:
        key = flowgen.flow_key("", A, "us-east-1", NOW, 1).replace(".log.gz", "_flaky.log.gz")
        bucket.put(key, flowgen.flow_object(flowgen.V2, 25).gz())
        config = write_config(tmp_path, [{"type": "vpcflow", "name": bucket.name,
                                          "endpoint_url": proxy.url}], read_timeout="1s")
        code, first = collect_once(config, capsys)
        assert first["objects"]["pending"] == 1 and code == 1
        [(status, attempts)] = query(tmp_path / "state", "SELECT status, attempts FROM objects")
        assert (status, attempts) == ("pending", core.collector.TRANSIENT_TRIES)
        faults.by_marker = {}
        code, second = collect_once(config, capsys)
        assert (code, second["records"], second["objects"]["done"]) == (0, 25, 1)
    finally:
        proxy.stop()


async def test_role_credentials_are_assumed_again_before_they_expire(
    bucket: Bucket, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll longer than iam_role_duration (a long backfill) keeps reading: the role is
    assumed again as its credentials near their end. Time is moved on by the credentials'
    clock (core.s3.clock), not waited for; S3 requests go through the proxy, which records
    the access key each was signed with (the emulator's STS gives a new key each time)."""
    import core.s3
    from core.config import GeneralConfig, parse_config

    key = flowgen.flow_key("", A, "us-east-1", NOW, 1)
    bucket.put(key, flowgen.flow_object(flowgen.V2, 5).gz())
    config = parse_config(
        f'[[bucket]]\ntype = "vpcflow"\nname = "{bucket.name}"\nendpoint_url = "{proxy.url}"\n'
        f'sts_endpoint = "{proxy.url}"\niam_role_arn = "arn:aws:iam::{A}:role/reader"\n'
        'iam_role_duration = "15m"\n')
    started = datetime.now(UTC)
    now = started
    monkeypatch.setattr(core.s3, "clock", lambda: now)
    async with core.s3.open_bucket(config.buckets[0], GeneralConfig()) as s3:
        await s3.fetch(key)
        now = started + timedelta(minutes=6)  # two thirds of its life left: kept
        await s3.fetch(key)
        assert proxy.requests["sts"] == 1
        now = started + timedelta(minutes=11)  # in its last third: assumed again
        await s3.fetch(key)
        # 30 s before the new ones end (the emulator dates them from the real time): again
        now = started + timedelta(minutes=14, seconds=30)
        await s3.fetch(key)
    assert proxy.requests["sts"] == 3
    first, second, third, fourth = proxy.access_keys
    assert first == second and len({second, third, fourth}) == 3


def test_each_poll_s_session_shares_the_process_s_loader_of_botocore_models(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A session is made for each bucket at each poll (it reads the credential chain again),
    but botocore's model files are read once per process: they cost 0.2-0.3 CPU-seconds a
    session (core/s3.py). A different data_path gets its own loader."""
    from core.s3 import _session

    first, second = _session(None), _session(None)
    assert first is not second
    assert first.get_component("data_loader") is second.get_component("data_loader")
    monkeypatch.setenv("AWS_DATA_PATH", "/nonexistent/models")
    assert _session(None).get_component("data_loader") is not first.get_component("data_loader")


def test_a_folder_denied_for_good_does_not_stop_the_relist_of_the_others(
    tmp_path: Path, bucket: Bucket, s3_server: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by an adversarial test: an account's folder denied from the first poll kept the
    entry's listing marks from ever being saved, so no relist ever ran, and an object of a
    readable account delivered after its day left the lookback was never read."""
    from core.store import open_store

    faults = Faults(denied_prefixes=(DENIED,))
    proxy = FaultProxy(s3_server.url, faults).start()  # type: ignore[attr-defined]
    try:
        bucket.put(flowgen.flow_key("", A, "us-east-1", NOW, 1), flowgen.flow_object(
            flowgen.V2, 10).gz())
        bucket.put(flowgen.flow_key("", B, "eu-west-1", NOW, 2), flowgen.flow_object(
            flowgen.V2, 11).gz())
        config = write_config(tmp_path, [{"type": "vpcflow", "name": bucket.name,
                                          "endpoint_url": proxy.url}],
                              lookback="48h", relist_interval="1h")
        _, first = collect_once(config, capsys)
        assert first["records"] == 10 and first["blocked_prefixes"]
        label = f"vpcflow:{bucket.name}"
        with open_store(tmp_path / "state") as store:  # (a week later: a relist is due)
            marks = store.listing_marks(label)
            assert marks.listed_from is not None and marks.relisted_at is not None
            store.set_listing_marks(label, replace(
                marks, listed_from=marks.listed_from - timedelta(days=5),
                relisted_at=marks.relisted_at - 7200))
        late = flowgen.flow_key("", A, "us-east-1", NOW - timedelta(days=4), 3)
        bucket.put(late, flowgen.flow_object(flowgen.V2, 12).gz())
        _, second = collect_once(config, capsys)
        assert (second["records"], second["late"]) == (12, 1)
    finally:
        proxy.stop()
