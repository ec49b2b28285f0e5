"""The JSON lines ``query --format json`` prints: every value exactly (found by an adversarial
test: a HUGEINT or DECIMAL became a float, NaN and Infinity made lines no JSON parser takes,
and a column named twice kept only its last value)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tests import flowgen
from tui.cli import main


@pytest.fixture
def state(tmp_path: Path) -> Path:
    flows = flowgen.flow_object(flowgen.V2, 20, seed=1)
    (tmp_path / "a.log").write_bytes(flows.text())
    assert main(["scan", str(tmp_path / "a.log"), "--state-dir", str(tmp_path / "state")]) == 0
    return tmp_path / "state"


def json_query(state: Path, sql: str, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert main(["query", "--state-dir", str(state), "--format", "json", sql]) == 0
    [line] = capsys.readouterr().out.splitlines()
    return json.loads(line, parse_float=Decimal)  # (strict: NaN is refused by parse_constant)


def test_numbers_keep_every_digit(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    row = json_query(state, "SELECT 9007199254740993::HUGEINT AS h, "
                     "99999999999999999.99::DECIMAL(20, 2) AS d, 0.0000001::DECIMAL(18, 10) AS s, "
                     "[1.25::DECIMAL(5, 2)] AS l, -3::BIGINT AS i, 1.5::DOUBLE AS f", capsys)
    assert row == {"h": 9007199254740993, "d": Decimal("99999999999999999.99"),
                   "s": Decimal("1E-7"), "l": [Decimal("1.25")], "i": -3, "f": Decimal("1.5")}


def test_a_sum_of_bytes_is_an_integer(tmp_path: Path, state: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The README's example: DuckDB's sum of BIGINTs is a HUGEINT (a DECIMAL to Arrow)."""
    total = sum(int(line.split()[9]) for line in (tmp_path / "a.log").read_text().splitlines()[1:])
    capsys.readouterr()
    assert main(["query", "--state-dir", str(state), "--format", "json",
                 "SELECT sum(bytes) AS b FROM flows"]) == 0
    assert capsys.readouterr().out == f'{{"b": {total}}}\n'  # (not {total}.0)


def test_floats_that_are_not_finite_are_null(state: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    capsys.readouterr()
    assert main(["query", "--state-dir", str(state), "--format", "json",
                 "SELECT 'nan'::DOUBLE AS n, 'inf'::DOUBLE AS i, '-inf'::DOUBLE AS m"]) == 0
    line = capsys.readouterr().out
    assert json.loads(line, parse_constant=refuse) == {"n": None, "i": None, "m": None}


def test_a_column_named_twice_is_a_usage_error(state: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    sql = "SELECT f1.srcaddr, f2.srcaddr FROM flows f1, flows f2 LIMIT 1"
    assert main(["query", "--state-dir", str(state), "--format", "json", sql]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "names srcaddr more than once" in err
    assert main(["query", "--state-dir", str(state), "--format", "csv", sql]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "srcaddr,srcaddr"


def test_both_writers_write_the_same_line() -> None:
    """A line goes through json.dumps (in C) unless it holds a DECIMAL or a float that is
    not finite; then through the exact writer: the two must agree on everything else."""
    import datetime as dt
    import uuid
    from collections import namedtuple

    from tui.json_lines import json_line, json_object

    interval = namedtuple("MonthDayNano", "months days nanoseconds")
    document = {"n": 3, "big": 2**70, "t": True, "none": None, "f": 1.25, "text": "é\x1b\u202e",
                "when": dt.datetime(2026, 12, 6, 11, 0, tzinfo=dt.UTC), "day": dt.date(2026, 1, 2),
                "at": dt.time(1, 2, 3), "id": uuid.UUID(int=1), "blob": b"\x01",
                "list": [1, "a", [2.5]], "map": {"k": [None]}, "every": interval(0, 1, 2)}
    assert json_line(document) == json_object(document.items())
    assert json.loads(json_line(document))["every"] == [0, 1, 2]
