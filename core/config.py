"""Configuration: a TOML file with Wazuh's aws-s3 option names, validated up front.

Every error names the file, the key and what is allowed, so that ``vpcwatch`` can exit 2
before touching anything. Credentials are never read from the file: they come only from the
botocore chain (profiles, SSO, roles, environment, instance metadata).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from core.names import ACCOUNT, ORG, REGION, parse_duration
from core.permissions import shared_write_problem

BUCKET_TYPES = ("vpcflow", "cloudtrail")
CREDENTIAL_KEYS = (
    "access_key",
    "secret_key",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "session_token",
)
_SIZE_UNITS = {"": 1, "b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "kb": 10**3,
               "mb": 10**6, "gb": 10**9}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_MONTHS = {m: i for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1)}


HOT_WINDOW = 86400.0  # the app's traffic index: the last day of flows (docs/app.md)
INDEX_MEMORY = 768 * 2**20  # the flow indexes' budget (docs/app.md, "Bounded memory")


class ConfigError(Exception):
    """An invalid configuration: the message names the file, the key and what is allowed."""


@dataclass(frozen=True)
class BucketConfig:
    type: str
    name: str
    path: str = ""
    path_suffix: str = ""
    aws_organization_id: str | None = None
    aws_account_id: tuple[str, ...] = ()
    aws_account_alias: str | None = None
    regions: tuple[str, ...] = ()
    aws_profile: str | None = None
    iam_role_arn: str | None = None
    external_id: str | None = None
    iam_role_duration: int | None = None
    only_logs_after: date | None = None
    endpoint_url: str | None = None
    sts_endpoint: str | None = None
    discard_field: str | None = None
    discard_regex: re.Pattern[str] | None = None

    @property
    def label(self) -> str:
        return f"{self.type}:{self.name}/{self.path}".rstrip("/")

    @property
    def logs_prefix(self) -> str:
        """The prefix under which accounts (or organizations) are listed, ending in '/'."""
        parts = [self.path, "AWSLogs", self.path_suffix, self.aws_organization_id or ""]
        return "/".join(part for part in parts if part) + "/"


@dataclass(frozen=True)
class GeneralConfig:
    interval: float = 600.0
    run_on_start: bool = True
    skip_on_error: bool = True
    state_dir: Path = field(default_factory=lambda: default_state_dir())
    lookback: float = 48 * 3600.0
    retention: float = 7 * 86400.0
    relist_interval: float = 86400.0  # how often the whole retention window is listed again
    hot_window: float = HOT_WINDOW  # the flows the app keeps in memory (docs/app.md)
    index_memory: int = INDEX_MEMORY  # the most memory the app's flow indexes take
    concurrency: int = 8
    max_attempts: int = 3
    max_object_size: int = 2**30
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    commit_records: int = 500_000
    commit_interval: float = 1.0
    rules: tuple[Path, ...] = ()
    default_rules: bool = True
    blocklist: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Config:
    general: GeneralConfig
    buckets: tuple[BucketConfig, ...]
    source: Path | None = None


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vpcwatch" / "config.toml"


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "vpcwatch"


def parse_size(value: object) -> int:
    """``"1GiB"`` -> 1073741824. Plain numbers are bytes. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match or match[2].lower() not in _SIZE_UNITS:
        raise ValueError(value)
    try:
        return int(float(match[1]) * _SIZE_UNITS[match[2].lower()])
    except OverflowError:  # (hundreds of digits: an infinite float)
        raise ValueError(value) from None


def parse_day(value: object) -> date:
    """ISO ``2026-01-01`` or Wazuh's ``2026-JAN-01``. Raises ValueError."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    parts = text.split("-")
    if len(parts) == 3 and parts[1].upper() in _MONTHS:
        return date(int(parts[0]), _MONTHS[parts[1].upper()], int(parts[2]))
    return date.fromisoformat(text)


class _Reader:
    """Reads one table of the TOML document, turning every bad value into a ConfigError."""

    def __init__(self, source: str, table: dict[str, Any], where: str, allowed: tuple[str, ...]):
        self.source = source
        self.table = table
        self.where = where
        for key in table:
            if key in CREDENTIAL_KEYS:
                raise self.error(
                    key,
                    "credentials are never read from the config; use aws_profile, "
                    "iam_role_arn or the AWS credential chain (environment, SSO, instance role)",
                )
            if key not in allowed:
                raise self.error(key, f"unknown key; allowed keys: {', '.join(allowed)}")

    def error(self, key: str, message: str) -> ConfigError:
        name = f"{self.where}.{key}" if self.where else key
        return ConfigError(f"{self.source}: {name}: {message}")

    def get(self, key: str, default: Any, convert: Callable[[Any], Any], allowed: str) -> Any:
        if key not in self.table:
            return default
        value = self.table[key]
        try:
            return convert(value)
        except (ValueError, TypeError, re.error) as exc:
            detail = f" ({exc})" if isinstance(exc, re.error) else ""
            raise self.error(key, f"{value!r} is not allowed{detail}; expected {allowed}") from None


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("yes", "no"):
        return value.lower() == "yes"
    raise TypeError(value)


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(value)
    return value


def _string_list(pattern: re.Pattern[str]) -> Callable[[object], tuple[str, ...]]:
    def convert(value: object) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            raise TypeError(value)
        result = tuple(str(item).strip() for item in items)
        if not all(pattern.match(item) for item in result):
            raise ValueError(value)
        return result

    return convert


def _matching(pattern: re.Pattern[str]) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if not isinstance(value, str) or not pattern.match(value):
            raise ValueError(value)
        return value

    return convert


def _prefix(value: object) -> str:
    text = _string(value).strip("/")
    if "AWSLogs" in text.split("/"):
        raise ValueError(value)
    return text


def _role_duration(value: object) -> int:
    seconds = int(parse_duration(value))
    if not 900 <= seconds <= 43200:
        raise ValueError(value)
    return seconds


def _url(value: object) -> str:
    text = _string(value)
    if not re.match(r"^https?://[^\s/]+", text):
        raise ValueError(value)
    return text


def _general(source: str, table: dict[str, Any], base: Path) -> GeneralConfig:
    allowed = tuple(GeneralConfig.__dataclass_fields__)
    r = _Reader(source, table, "general", allowed)
    defaults = GeneralConfig()

    def state_dir(value: object) -> Path:
        path = Path(os.path.expandvars(_string(value))).expanduser()
        return path if path.is_absolute() else (base / path)

    duration = "a duration such as 30s, 10m, 48h or 7d, at most 100 years"
    return GeneralConfig(
        interval=r.get("interval", defaults.interval, _min_duration(1), duration + " (≥ 1s)"),
        run_on_start=r.get("run_on_start", True, _boolean, "true or false"),
        skip_on_error=r.get("skip_on_error", True, _boolean, "true or false"),
        state_dir=r.get("state_dir", defaults.state_dir, state_dir, "a directory path"),
        lookback=r.get("lookback", defaults.lookback, _min_duration(3600), duration + " (≥ 1h)"),
        retention=r.get("retention", defaults.retention, _min_duration(3600), duration + " (≥ 1h)"),
        relist_interval=r.get("relist_interval", defaults.relist_interval, _min_duration(3600),
                              duration + " (≥ 1h)"),
        hot_window=r.get("hot_window", defaults.hot_window, _min_duration(3600),
                         duration + " (≥ 1h)"),
        index_memory=r.get("index_memory", defaults.index_memory, _at_least(parse_size, 64 * 2**20),
                         "a size such as 768MiB or 2GiB (≥ 64MiB)"),
        concurrency=r.get("concurrency", 8, _bounded_int(1, 64), "an integer from 1 to 64"),
        max_attempts=r.get("max_attempts", 3, _bounded_int(1, 20), "an integer from 1 to 20"),
        max_object_size=r.get("max_object_size", defaults.max_object_size,
                              _at_least(parse_size, 2**20), "a size such as 512MiB or 2GiB "
                              "(≥ 1MiB)"),
        connect_timeout=r.get("connect_timeout", 10.0, _min_duration(0.1), duration),
        read_timeout=r.get("read_timeout", 60.0, _min_duration(0.1), duration),
        commit_records=r.get("commit_records", 500_000, _bounded_int(1, 10_000_000),
                             "an integer from 1 to 10000000"),
        commit_interval=r.get("commit_interval", 1.0, _min_duration(0), duration),
        rules=r.get("rules", (), _paths(base), "a list of rule file paths"),
        default_rules=r.get("default_rules", True, _boolean, "true or false"),
        blocklist=r.get("blocklist", (), _paths(base), "a list of blocklist file paths"),
    )


def _paths(base: Path) -> Callable[[object], tuple[Path, ...]]:
    def convert(value: object) -> tuple[Path, ...]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise TypeError(value)
        paths = (Path(os.path.expandvars(item)).expanduser() for item in value)
        return tuple(path if path.is_absolute() else base / path for path in paths)

    return convert


def _at_least(parse: Callable[[object], float], minimum: float) -> Callable[[object], Any]:
    """``parse``, refusing values below ``minimum``."""
    def convert(value: object) -> float:
        parsed = parse(value)
        if parsed < minimum:
            raise ValueError(value)
        return parsed

    return convert


def _min_duration(minimum: float) -> Callable[[object], float]:
    return _at_least(parse_duration, minimum)


def _bounded_int(low: int, high: int) -> Callable[[object], int]:
    def convert(value: object) -> int:
        number = _positive_int(value)
        if not low <= number <= high:
            raise ValueError(value)
        return number

    return convert


def _bucket(source: str, table: dict[str, Any], where: str) -> BucketConfig:
    r = _Reader(source, table, where, tuple(BucketConfig.__dataclass_fields__))
    if "type" not in table:
        raise r.error("type", f"missing; allowed: {', '.join(BUCKET_TYPES)}")
    if "name" not in table:
        raise r.error("name", "missing; the S3 bucket name")
    btype = r.get("type", None, _one_of(BUCKET_TYPES), " or ".join(BUCKET_TYPES))
    name = r.get("name", None, _matching(re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")),
                 "an S3 bucket name (3-63 characters: a-z, 0-9, '.', '-')")
    discard_field = r.get("discard_field", None, _string, "a field name")
    discard_regex = r.get("discard_regex", None, _regex, "a regular expression (RE2 syntax)")
    if (discard_field is None) != (discard_regex is None):
        raise r.error("discard_regex", "discard_field and discard_regex go together")
    text = "a string"
    return BucketConfig(
        type=btype,
        name=name,
        path=r.get("path", "", _prefix, "a key prefix before AWSLogs/ (not AWSLogs itself)"),
        path_suffix=r.get("path_suffix", "", _prefix, "a key part after AWSLogs/"),
        aws_organization_id=r.get("aws_organization_id", None, _matching(ORG),
                                  "an organization id such as o-a1b2c3d4e5"),
        aws_account_id=r.get("aws_account_id", (), _string_list(ACCOUNT),
                             "a list of 12-digit account ids"),
        aws_account_alias=r.get("aws_account_alias", None, _string, text),
        regions=r.get("regions", (), _string_list(REGION), "a list of regions like us-east-1"),
        aws_profile=r.get("aws_profile", None, _string, "a profile name"),
        iam_role_arn=r.get("iam_role_arn", None,
                           _matching(re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")),
                           "a role ARN (arn:aws:iam::123456789012:role/Name)"),
        external_id=r.get("external_id", None, _string, text),
        iam_role_duration=r.get("iam_role_duration", None, _role_duration,
                                "a duration from 900s to 12h"),
        only_logs_after=r.get("only_logs_after", None, parse_day,
                              "a date such as 2026-01-01 or 2026-JAN-01"),
        endpoint_url=r.get("endpoint_url", None, _url, "an http(s):// URL"),
        sts_endpoint=r.get("sts_endpoint", None, _url, "an http(s):// URL"),
        discard_field=discard_field,
        discard_regex=discard_regex,
    )


def _regex(value: object) -> re.Pattern[str]:
    pattern = re.compile(_string(value))
    try:  # records are filtered by Arrow, whose engine is RE2: refuse what RE2 cannot run
        pc.match_substring_regex(pa.array([""]), pattern.pattern)
    except pa.ArrowInvalid as exc:
        raise ValueError(str(exc)) from None
    return pattern


def _one_of(choices: tuple[str, ...]) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if value not in choices:
            raise ValueError(value)
        return str(value)

    return convert


def parse_config(text: str, source: str = "<config>", base: Path | None = None) -> Config:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    top = _Reader(source, document, "", ("general", "bucket"))
    general_table = document.get("general", {})
    if not isinstance(general_table, dict):
        raise top.error("general", "must be a table: [general]")
    general = _general(source, general_table, base or Path.cwd())
    buckets_table = document.get("bucket", [])
    if not isinstance(buckets_table, list) or not buckets_table:
        raise top.error("bucket", "at least one [[bucket]] table is required")
    if not all(isinstance(table, dict) for table in buckets_table):
        raise top.error("bucket", "must be [[bucket]] tables, not a list of values")
    buckets = tuple(
        _bucket(source, table, f"bucket[{index}]") for index, table in enumerate(buckets_table)
    )
    _refuse_overlaps(source, buckets)
    return Config(general=general, buckets=buckets, source=Path(source))


def _refuse_overlaps(source: str, buckets: tuple[BucketConfig, ...]) -> None:
    """Two entries that would list the same objects would read them twice: refused."""
    def meet(one: tuple[str, ...], other: tuple[str, ...]) -> bool:
        return not one or not other or bool(set(one) & set(other))

    for j, later in enumerate(buckets):
        for i, earlier in enumerate(buckets[:j]):
            if (earlier.type, earlier.name) != (later.type, later.name):
                continue
            a, b = earlier.logs_prefix, later.logs_prefix
            if ((a.startswith(b) or b.startswith(a))
                    and meet(earlier.aws_account_id, later.aws_account_id)
                    and meet(earlier.regions, later.regions)):
                raise ConfigError(
                    f"{source}: bucket[{j}]: lists the same objects as bucket[{i}] (same type, "
                    "name and path, accounts and regions that overlap); merge the two, or give "
                    "them different path, aws_account_id or regions")


def load_config(path: str | os.PathLike[str]) -> Config:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
        problem = shared_write_problem(file)
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text") from None
    if problem:
        raise ConfigError(f"{file}: {problem}")
    return parse_config(text, str(file), file.resolve().parent)
