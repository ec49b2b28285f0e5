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
from pathlib import Path
from typing import Any

from core.config.model import (
    BUCKET_TYPES,
    CREDENTIAL_KEYS,
    BucketConfig,
    Config,
    ConfigError,
    GeneralConfig,
)
from core.config.values import (
    at_least,
    boolean,
    bounded_int,
    discard_column,
    discard_fields,
    matching,
    min_duration,
    one_of,
    parse_day,
    parse_size,
    paths,
    prefix,
    regex,
    role_duration,
    string,
    string_list,
    url,
)
from core.names import ACCOUNT, ORG, REGION
from core.permissions import read_text_file, shared_write_problem


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


def _general(source: str, table: dict[str, Any], base: Path) -> GeneralConfig:
    allowed = tuple(GeneralConfig.__dataclass_fields__)
    r = _Reader(source, table, "general", allowed)
    defaults = GeneralConfig()

    def state_dir(value: object) -> Path:
        path = Path(os.path.expandvars(string(value))).expanduser()
        return path if path.is_absolute() else (base / path)

    duration = "a duration such as 30s, 10m, 48h or 7d, at most 100 years"
    return GeneralConfig(
        interval=r.get("interval", defaults.interval, min_duration(1), duration + " (≥ 1s)"),
        run_on_start=r.get("run_on_start", True, boolean, "true or false"),
        skip_on_error=r.get("skip_on_error", True, boolean, "true or false"),
        state_dir=r.get("state_dir", defaults.state_dir, state_dir, "a directory path"),
        lookback=r.get("lookback", defaults.lookback, min_duration(3600), duration + " (≥ 1h)"),
        retention=r.get("retention", defaults.retention, min_duration(3600), duration + " (≥ 1h)"),
        relist_interval=r.get("relist_interval", defaults.relist_interval, min_duration(3600),
                              duration + " (≥ 1h)"),
        hot_window=r.get("hot_window", defaults.hot_window, min_duration(3600),
                         duration + " (≥ 1h)"),
        index_memory=r.get("index_memory", defaults.index_memory, at_least(parse_size, 64 * 2**20),
                         "a size such as 768MiB or 2GiB (≥ 64MiB)"),
        concurrency=r.get("concurrency", 8, bounded_int(1, 64), "an integer from 1 to 64"),
        max_attempts=r.get("max_attempts", 3, bounded_int(1, 20), "an integer from 1 to 20"),
        max_object_size=r.get("max_object_size", defaults.max_object_size,
                              at_least(parse_size, 2**20, 2**40), "a size such as 512MiB or "
                              "2GiB (1MiB to 1TiB)"),
        connect_timeout=r.get("connect_timeout", 10.0, min_duration(0.1), duration),
        read_timeout=r.get("read_timeout", 60.0, min_duration(0.1), duration),
        commit_records=r.get("commit_records", 500_000, bounded_int(1, 10_000_000),
                             "an integer from 1 to 10000000"),
        commit_interval=r.get("commit_interval", 1.0, min_duration(0), duration),
        rules=r.get("rules", (), paths(base), "a list of rule file paths"),
        default_rules=r.get("default_rules", True, boolean, "true or false"),
        blocklist=r.get("blocklist", (), paths(base), "a list of blocklist file paths"),
    )


def _bucket(source: str, table: dict[str, Any], where: str) -> BucketConfig:
    r = _Reader(source, table, where, tuple(BucketConfig.__dataclass_fields__))
    if "type" not in table:
        raise r.error("type", f"missing; allowed: {', '.join(BUCKET_TYPES)}")
    if "name" not in table:
        raise r.error("name", "missing; the S3 bucket name")
    btype = r.get("type", None, one_of(BUCKET_TYPES), " or ".join(BUCKET_TYPES))
    name = r.get("name", None, matching(re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")),
                 "an S3 bucket name (3-63 characters: a-z, 0-9, '.', '-')")
    discard_field = r.get("discard_field", None, discard_column(btype), discard_fields(btype))
    discard_regex = r.get("discard_regex", None, regex, "a regular expression (RE2 syntax)")
    if (discard_field is None) != (discard_regex is None):
        raise r.error("discard_regex", "discard_field and discard_regex go together")
    text = "a string"
    return BucketConfig(
        type=btype,
        name=name,
        path=r.get("path", "", prefix, "a key prefix before AWSLogs/ (not AWSLogs itself)"),
        path_suffix=r.get("path_suffix", "", prefix, "a key part after AWSLogs/"),
        aws_organization_id=r.get("aws_organization_id", None, matching(ORG),
                                  "an organization id such as o-a1b2c3d4e5"),
        aws_account_id=r.get("aws_account_id", (), string_list(ACCOUNT),
                             "a list of 12-digit account ids"),
        aws_account_alias=r.get("aws_account_alias", None, string, text),
        regions=r.get("regions", (), string_list(REGION), "a list of regions like us-east-1"),
        aws_profile=r.get("aws_profile", None, string, "a profile name"),
        iam_role_arn=r.get("iam_role_arn", None,
                           matching(re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")),
                           "a role ARN (arn:aws:iam::123456789012:role/Name)"),
        external_id=r.get("external_id", None, string, text),
        iam_role_duration=r.get("iam_role_duration", None, role_duration,
                                "a duration from 900s to 12h"),
        only_logs_after=r.get("only_logs_after", None, parse_day,
                              "a date such as 2026-01-01 or 2026-JAN-01"),
        endpoint_url=r.get("endpoint_url", None, url, "an http(s):// URL"),
        sts_endpoint=r.get("sts_endpoint", None, url, "an http(s):// URL"),
        discard_field=discard_field,
        discard_regex=discard_regex,
    )


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
    try:  # (a regular file: a FIFO given as the configuration was waited on for ever)
        text = read_text_file(file)
        problem = shared_write_problem(file)
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text") from None
    if problem:
        raise ConfigError(f"{file}: {problem}")
    return parse_config(text, str(file), file.resolve().parent)
