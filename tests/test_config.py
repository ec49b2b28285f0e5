"""Configuration: Wazuh's option names, and a precise error for every bad value."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import pytest

from core.config import ConfigError, load_config, parse_config
from tui.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_the_example_config_is_valid_and_means_what_it_says(tmp_path: Path) -> None:
    example = tmp_path / "config.toml"
    shutil.copy(ROOT / "config.example.toml", example)
    config = load_config(example)
    assert config.general.interval == 600
    assert config.general.lookback == 48 * 3600
    assert config.general.retention == 7 * 86400
    assert config.general.skip_on_error is True
    assert [b.type for b in config.buckets] == ["vpcflow", "cloudtrail"]
    assert config.buckets[0].name == "wazuh-aws-wodle" and config.buckets[0].path == "vpc"


def test_every_option_is_read() -> None:
    text = """
[general]
interval = "90s"
run_on_start = false
state_dir = "relative/state"
relist_interval = "6h"
[[bucket]]
type = "vpcflow"
name = "my-logs"
path = "/vpc/"
path_suffix = "extra"
aws_organization_id = "o-abcdefghij"
aws_account_id = "123456789012, 210987654321"
regions = ["us-east-1", "eu-west-1"]
aws_profile = "prod"
iam_role_arn = "arn:aws:iam::123456789012:role/reader"
external_id = "x"
iam_role_duration = 3600
only_logs_after = "2026-JAN-05"
endpoint_url = "http://127.0.0.1:9000"
sts_endpoint = "https://sts.us-east-1.amazonaws.com"
discard_field = "action"
discard_regex = "^REJECT$"
"""
    config = parse_config(text, "c.toml", Path("/base"))
    bucket = config.buckets[0]
    assert config.general.interval == 90 and config.general.run_on_start is False
    assert config.general.state_dir == Path("/base/relative/state")
    assert config.general.relist_interval == 6 * 3600
    assert bucket.path == "vpc" and bucket.aws_account_id == ("123456789012", "210987654321")
    assert bucket.only_logs_after == date(2026, 1, 5)
    assert bucket.iam_role_duration == 3600
    assert bucket.discard_regex is not None and bucket.discard_regex.pattern == "^REJECT$"


@pytest.mark.parametrize("bucket", ["bucket = [1, 2]", 'bucket = ["abc"]'])
def test_buckets_that_are_not_tables_are_named_so(bucket: str) -> None:
    with pytest.raises(ConfigError, match=r"conf.toml: bucket: must be \[\[bucket\]\] tables"):
        parse_config(f"{bucket}\n[general]\n", "conf.toml")


@pytest.mark.parametrize(
    ("line", "section", "key", "allowed"),
    [
        ('interval = "soon"', "general", "interval", "duration"),
        ('relist_interval = "5m"', "general", "relist_interval", "≥ 1h"),
        ("concurrency = 0", "general", "concurrency", "1 to 64"),
        ('index_memory = "10MiB"', "general", "index_memory", "≥ 64MiB"),
        ("skip_on_error = 3", "general", "skip_on_error", "true or false"),
        ('colour = "blue"', "general", "colour", "allowed keys"),
        ('type = "guardduty"', "bucket", "type", "vpcflow or cloudtrail"),
        ('regions = ["mars-1"]', "bucket", "regions", "us-east-1"),
        ('aws_account_id = ["12"]', "bucket", "aws_account_id", "12-digit"),
        ('path = "AWSLogs"', "bucket", "path", "not AWSLogs"),
        ('only_logs_after = "yesterday"', "bucket", "only_logs_after", "2026-01-01"),
        ('discard_regex = "(?<=x)y"', "bucket", "discard_regex", "RE2"),
        # (found by an adversarial test: a name no column has filtered nothing, silently)
        ('discard_field = "eventName"\ndiscard_regex = "x"', "bucket", "discard_field",
         "a flow-log field such as srcaddr"),
        ('discard_field = ""\ndiscard_regex = "x"', "bucket", "discard_field", "log-status"),
        ('secret_key = "abc"', "bucket", "secret_key", "credential chain"),
        # (found by an adversarial review: each was accepted, then failed every poll)
        ("lookback = inf", "general", "lookback", "at most 100 years"),
        ("retention = nan", "general", "retention", "duration"),
        ('lookback = "999999d"', "general", "lookback", "at most 100 years"),
        ("interval = nan", "general", "interval", "duration"),  # (it polled without pause)
        ("read_timeout = nan", "general", "read_timeout", "duration"),
        ("max_object_size = 0", "general", "max_object_size", "1MiB to 1TiB"),
        # (found by an adversarial test: loaded, then every .gz object quarantined)
        ("max_object_size = 9223372036854775807", "general", "max_object_size", "1TiB"),
        (f"interval = {'9' * 400}", "general", "interval", "at most 100 years"),
        (f'max_object_size = "{"9" * 400}GiB"', "general", "max_object_size", "size"),
    ],
)
def test_a_bad_value_names_file_key_and_what_is_allowed(
    line: str, section: str, key: str, allowed: str
) -> None:
    general = line if section == "general" else ""
    bucket = line if section == "bucket" else ""
    base = 'type = "vpcflow"\nname = "my-logs"\n'
    if key == "type":
        base = 'name = "my-logs"\n'
    if key == "discard_regex":
        bucket += '\ndiscard_field = "action"'
    text = f"[general]\n{general}\n[[bucket]]\n{base}{bucket}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "conf.toml")
    message = str(caught.value)
    assert message.startswith("conf.toml: ")
    assert (f"general.{key}" if section == "general" else f"bucket[0].{key}") in message
    assert allowed in message
    assert "abc" not in message  # a secret is never echoed


@pytest.mark.parametrize(("btype", "field", "column"), [
    ("cloudtrail", "eventName", "event_name"), ("cloudtrail", "event_name", "event_name"),
    ("cloudtrail", "userIdentity.arn", "user_arn"), ("vpcflow", "log-status", "log_status"),
    ("vpcflow", "srcaddr", "srcaddr")])
def test_discard_field_takes_wazuhs_names_and_the_columns(btype: str, field: str,
                                                          column: str) -> None:
    text = (f'[[bucket]]\ntype = "{btype}"\nname = "my-logs"\ndiscard_field = "{field}"\n'
            'discard_regex = "^CreateVpc$"\n')
    assert parse_config(text, "conf.toml").buckets[0].discard_field == column


def test_a_cloudtrail_discard_by_wazuhs_field_name_drops_the_events() -> None:
    """``<discard_regex field="eventName">`` as import-wazuh writes it."""
    from core.layouts import Kind
    from core.objects import ObjectRef
    from core.reader import read_object
    from tests import flowgen

    text = ('[[bucket]]\ntype = "cloudtrail"\nname = "my-logs"\ndiscard_field = "eventName"\n'
            'discard_regex = "^CreateVpc$"\n')
    bucket = parse_config(text, "conf.toml").buckets[0]
    body = flowgen.trail_object([flowgen.trail_event(name, event_id=f"e{n}")
                                 for n, name in enumerate(["CreateVpc", "DeleteVpc"])])
    result = read_object(ObjectRef("b", "t.json.gz", "e", len(body), Kind.CLOUDTRAIL), body,
                         2**30, bucket.discard_field, bucket.discard_regex)
    assert result.events is not None and result.events["event_name"].to_pylist() == ["DeleteVpc"]
    assert result.discarded == 1


def test_cli_exits_2_on_a_bad_config_and_touches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(f'[general]\nstate_dir = "{tmp_path / "state"}"\nlookback = "2x"\n'
                      '[[bucket]]\ntype = "vpcflow"\nname = "b-1"\n')
    assert main(["collect", "--config", str(config), "--once"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.toml: general.lookback: '2x' is not allowed" in err[0]
    assert not (tmp_path / "state").exists()


def test_a_world_writable_config_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[bucket]]\ntype = "vpcflow"\nname = "b-1"\n')
    os.chmod(config, 0o666)
    with pytest.raises(ConfigError, match="writable by every user"):
        load_config(config)


def test_xdg_state_home_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "/xdg/state")
    config = parse_config('[[bucket]]\ntype = "vpcflow"\nname = "b-1"\n')
    assert config.general.state_dir == Path("/xdg/state/vpcwatch")


@pytest.mark.parametrize(("content", "said"), [
    (b"10.0.0.0/33\n", "block.txt:1: '10.0.0.0/33' is not an IP address or CIDR"),
    # (found by an adversarial test: an internal error)
    (b"10.0.0.1\n\xff\xfe\n", "block.txt: the blocklist is not UTF-8 text (byte 10)"),
])
def test_a_bad_blocklist_exits_2_before_the_state_dir_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, said: str
) -> None:
    (tmp_path / "block.txt").write_bytes(content)
    config = tmp_path / "c.toml"
    config.write_text(f'[general]\nstate_dir = "{tmp_path / "state"}"\n'
                      'blocklist = ["block.txt"]\n[[bucket]]\ntype = "vpcflow"\nname = "b-1"\n')
    assert main(["collect", "--config", str(config), "--once"]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(("second", "overlaps"), [
    ('type = "cloudtrail"\nname = "logs"', False),  # the example config's pair
    ('type = "vpcflow"\nname = "logs"', True),
    ('type = "vpcflow"\nname = "logs"\naws_organization_id = "o-a1b2c3d4e5"', True),
    ('type = "vpcflow"\nname = "logs"\npath = "other"', False),
    ('type = "vpcflow"\nname = "logs"\naws_account_id = ["222222222222"]', False),
    ('type = "vpcflow"\nname = "logs"\naws_account_id = ["111111111111", "333333333333"]',
     True),
    ('type = "vpcflow"\nname = "logs"\nregions = ["eu-west-1"]', False),
    ('type = "vpcflow"\nname = "other-logs"', False),
])
def test_two_entries_that_would_list_the_same_objects_are_refused(
    second: str, overlaps: bool
) -> None:
    first = 'type = "vpcflow"\nname = "logs"\naws_account_id = ["111111111111"]\n' \
            'regions = ["us-east-1"]'
    text = f"[[bucket]]\n{first}\n[[bucket]]\n{second}\n"
    if not overlaps:
        assert len(parse_config(text, "conf.toml").buckets) == 2
        return
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "conf.toml")
    assert str(caught.value).startswith(
        "conf.toml: bucket[1]: lists the same objects as bucket[0]")


def test_a_configuration_saved_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    """(Editors on Windows write one; it was 'not valid TOML ... line 1, column 1'.)"""
    path = tmp_path / "c.toml"
    path.write_bytes(b'\xef\xbb\xbf[[bucket]]\ntype = "vpcflow"\nname = "my-logs"\n')
    assert load_config(path).buckets[0].name == "my-logs"


def test_a_configuration_through_a_link_reads(tmp_path: Path) -> None:
    """(Kubernetes mounts a ConfigMap's files as links; so do stow and home-manager.)"""
    (tmp_path / "real.toml").write_text('[[bucket]]\ntype = "vpcflow"\nname = "my-logs"\n')
    (tmp_path / "c.toml").symlink_to("real.toml")
    assert load_config(tmp_path / "c.toml").buckets[0].name == "my-logs"


@pytest.mark.parametrize("key", ["", "rules", "blocklist"])
def test_a_fifo_named_as_a_file_to_read_is_refused_not_waited_on(tmp_path: Path,
                                                                 key: str) -> None:
    """Found by an adversarial test: a FIFO given as the configuration, a rule file or a
    blocklist was read, and so waited on, for ever."""
    import threading

    from core.rules import BlocklistError

    os.mkfifo(tmp_path / "pipe")
    config = tmp_path / "pipe"
    if key:
        config = tmp_path / "c.toml"
        config.write_text(f'[general]\n{key} = ["pipe"]\n[[bucket]]\ntype = "vpcflow"\n'
                          'name = "my-logs"\n')
    outcome: list[str] = []

    def load() -> None:
        try:
            main(["rules", "list", "--config", str(config)])
        except (ConfigError, BlocklistError) as exc:
            outcome.append(str(exc))
        outcome.append("returned")

    loading = threading.Thread(target=load, daemon=True)
    loading.start()
    loading.join(timeout=60)
    assert outcome[-1:] == ["returned"]


def test_a_rule_file_saved_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    from core.rules import load_engine

    (tmp_path / "mine.toml").write_bytes(
        b'\xef\xbb\xbf[[rule]]\nid = "x.disabled"\nenabled = false\n')
    assert load_engine([tmp_path / "mine.toml"]).errors == []


def test_max_object_size_takes_its_largest_value_as_written() -> None:
    """(The message said "1MiB to 1TiB", and "1TiB" was refused: no such unit; a review.)"""
    config = parse_config('[general]\nmax_object_size = "1TiB"\n[[bucket]]\ntype = "vpcflow"\n'
                          'name = "my-logs"\n', "conf.toml")
    assert config.general.max_object_size == 2**40
