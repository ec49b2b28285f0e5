"""What a configuration holds (``Config``: ``[general]`` and each ``[[bucket]]``), with
the defaults of every setting."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

BUCKET_TYPES = ("vpcflow", "cloudtrail")
CREDENTIAL_KEYS = (
    "access_key",
    "secret_key",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "session_token",
)

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
    def marks_key(self) -> str:
        """What names this entry's listing marks in the store: its label, and what else
        decides what it lists (two entries of one bucket and path, for two accounts, shared
        one backfill, and the one added later never read its older days: found by an
        adversarial test). An entry without such settings keeps its label (and its marks)."""
        chosen = [f"{name}={value}" for name, value in (
            ("suffix", self.path_suffix), ("org", self.aws_organization_id or ""),
            ("accounts", ",".join(sorted(self.aws_account_id))),
            ("regions", ",".join(sorted(self.regions)))) if value]
        return self.label + (f" [{' '.join(chosen)}]" if chosen else "")

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
