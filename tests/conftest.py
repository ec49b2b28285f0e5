"""Shared fixtures: a real S3 endpoint (moto's server on 127.0.0.1) and configuration files."""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import boto3
import pytest
from rich.text import Text
from textual.content import Content

from core.store import Store
from tests.flowgen import BASE_TIME
from tui.embedded_s3 import EmbeddedS3, start_s3, use_emulator_credentials

VPCWATCH = Path(sys.executable).with_name("vpcwatch")  # the installed command

use_emulator_credentials()
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[EmbeddedS3]:
    server = start_s3()
    yield server
    server.stop()


class Bucket:
    """A fresh bucket on the emulator, with a plain boto3 client to fill it."""

    def __init__(self, url: str):
        self.url = url
        self.name = f"vpcwatch-{uuid.uuid4().hex[:12]}"
        self.client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
        self.client.create_bucket(Bucket=self.name)

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)

    def size(self, key: str) -> int:
        return int(self.client.head_object(Bucket=self.name, Key=key)["ContentLength"])


@pytest.fixture(autouse=True)
def yielded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Commands run in this process (``main([...])``) record that they would lower its
    priority (core/priority.py) instead of lowering it for the rest of the session: a
    process cannot raise it back. Subprocesses lower theirs for real."""
    import tui.cli

    calls: list[str] = []
    monkeypatch.setattr(tui.cli, "yield_to_collector",
                        lambda *_, **__: calls.append("yielded"))
    return calls


@pytest.fixture
def bucket(s3_server: EmbeddedS3) -> Bucket:
    return Bucket(s3_server.url)


def fixture_days(more: int) -> str:
    """A span (``"Nd"``) that reaches ``more`` days before the fixtures' fixed record times
    (``flowgen.BASE_TIME``), whatever today's date: a retention or lookback of a fixed
    number of days would drop them once they are that old (a test's data must not expire)."""
    return f"{int(time.time() - BASE_TIME) // 86400 + 1 + more}d"


def write_config(
    directory: Path,
    buckets: list[dict[str, Any]],
    **general: Any,
) -> Path:
    """A TOML config with a private state dir under ``directory``. Detection rules are off
    unless the test asks for them (``default_rules=True``): ingest tests stay fast. The
    retention keeps the fixtures' records unless the test sets its own."""
    general.setdefault("state_dir", str(directory / "state"))
    general.setdefault("default_rules", False)
    general.setdefault("retention", fixture_days(30))
    lines = ["[general]"] + [f"{key} = {json.dumps(value)}" for key, value in general.items()]
    for table in buckets:
        lines.append("[[bucket]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    path = directory / "vpcwatch.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    """Run ``vpcwatch ARGS`` (a command ending with a JSON summary line); its exit code and
    that summary."""
    from tui.cli import main

    code = main(args)
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def collect_once(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    """``vpcwatch collect --once --json``: its exit code and summary."""
    return run_json(["collect", "--config", str(config), "--once", "--json"], capsys)


def query(state_dir: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` against the store in ``state_dir``, opened read-only."""
    store = Store(state_dir, read_only=True)
    try:
        return store.con.execute(sql, params or []).fetchall()
    finally:
        store.close()


SUMMARY_OF_FLOWS = """
    SELECT start // 60 * 60, account_id, vpc_id, interface_id, action, count(*),
           coalesce(sum(packets), 0), coalesce(sum(bytes), 0)
    FROM flows GROUP BY ALL ORDER BY ALL"""
SUMMARY = """
    SELECT minute, account_id, vpc_id, interface_id, action, sum(flows), sum(packets),
           sum(bytes)
    FROM traffic_minutes GROUP BY ALL ORDER BY ALL"""


def assert_summary_is_the_flows(con: Any) -> None:
    """The traffic summary (core/store/summaries.py) equals the same aggregation over the
    raw flows of the store ``con`` reads (and says something: it has rows)."""
    summary = con.execute(SUMMARY).fetchall()
    assert summary, "an empty summary"
    assert summary == con.execute(SUMMARY_OF_FLOWS).fetchall()


class LineReader:
    """Lines of a child process's stream, waited for with a timeout (never a sleep)."""

    def __init__(self, stream: IO[str]):
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put("")  # end of stream

    def wait_for(self, text: str, count: int = 1, timeout: float = 120) -> str:
        """Block until ``count`` lines containing ``text`` were read; return the last one."""
        while True:
            line = self._lines.get(timeout=timeout)
            assert line, f"the stream ended before {count} lines with {text!r}"
            if text in line:
                count -= 1
                if count == 0:
                    return line


def unsafe_in(text: object) -> list[str]:
    """The characters of ``text`` that could act on a terminal or hide (newline aside)."""
    if not isinstance(text, str):
        return []
    return sorted({c for c in text if c != "\n"
                   and unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs")})


@pytest.fixture
def text_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail where a rich Text or a Textual Content is made from, or appended, text with
    unsafe characters: a path around ``tui.cells.plain`` fails where it is."""
    def guarded(original: Callable[..., Any]) -> Callable[..., Any]:
        def check(self: object, text: object = "", *args: Any, **kwargs: Any) -> Any:
            assert unsafe_in(text) == [], f"unsafe text reached a widget: {text!r}"
            return original(self, text, *args, **kwargs)
        return check

    for cls, method in ((Text, "__init__"), (Text, "append"), (Content, "__init__")):
        monkeypatch.setattr(cls, method, guarded(getattr(cls, method)))
