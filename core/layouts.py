"""S3 key layouts AWS writes VPC Flow Logs and CloudTrail in, and what a key name tells.

```
default  {path}/AWSLogs/[{suffix}/][{o-org}/]{account}/vpcflowlogs/{region}/YYYY/MM/DD/[HH/]name
hive     {path}/AWSLogs/[...]aws-account-id={a}/aws-service=vpcflowlogs/aws-region={r}/
             year=YYYY/month=MM/day=DD/[hour=HH/]name
trail    {path}/AWSLogs/[{o-org}/]{account}/CloudTrail/{region}/YYYY/MM/DD/name.json.gz
```
Pure functions only: listing S3 is the job of ``core.s3``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from core.names import REGION_CODE

HIVE_ACCOUNT = re.compile(r"^aws-account-id=(\d{12})$")
# AWS's object names start with the account and region: 123456789012_vpcflowlogs_us-east-1_
NAME_CONTEXT = re.compile(rf"^(\d{{12}})_(?:vpcflowlogs|CloudTrail)_({REGION_CODE})_")
# AWS's object names end with the 5-minute window they were delivered for: _20261129T0135Z_
DELIVERY = re.compile(r"_(\d{8}T\d{4})Z_[^/]*$")
HIVE_REGION = re.compile(rf"^aws-region=({REGION_CODE})$")

SERVICE_FOLDER = {"vpcflow": "vpcflowlogs", "cloudtrail": "CloudTrail"}


class Kind(StrEnum):
    """What an object holds, decided from its name."""

    TEXT = "text"  # flow-log text, gzip or plain
    PARQUET = "parquet"
    CLOUDTRAIL = "cloudtrail"
    OTHER = "other"  # not ours to read: recorded as skipped


@dataclass(frozen=True)
class Partition:
    """One (account, region) folder of one bucket, in one key layout."""

    account: str
    region: str
    root: str  # the key prefix of the region folder, ending in '/'
    hive: bool = False

    def day_prefix(self, day: date) -> str:
        if self.hive:
            return f"{self.root}year={day:%Y}/month={day:%m}/day={day:%d}/"
        return f"{self.root}{day:%Y}/{day:%m}/{day:%d}/"


def default_partition(parent: str, account: str, service: str, region: str) -> Partition:
    return Partition(account, region, f"{parent}{account}/{SERVICE_FOLDER[service]}/{region}/")


def hive_partition(parent: str, account: str, region: str) -> Partition:
    root = f"{parent}aws-account-id={account}/aws-service=vpcflowlogs/aws-region={region}/"
    return Partition(account, region, root, hive=True)


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def kind_of(key: str, service: str) -> Kind:
    name = key.rsplit("/", 1)[-1]
    if service == "cloudtrail":
        return Kind.CLOUDTRAIL if name.endswith((".json.gz", ".json")) else Kind.OTHER
    if name.endswith((".log.gz", ".log")):
        return Kind.TEXT
    if name.endswith(".parquet"):
        return Kind.PARQUET
    return Kind.OTHER


def kinds_of(service: str) -> tuple[Kind, ...]:
    """The kinds of object a bucket entry of this type reads."""
    return (Kind.CLOUDTRAIL,) if service == "cloudtrail" else (Kind.TEXT, Kind.PARQUET)


def kind_of_path(name: str) -> Kind:
    """The kind of a local file, for ``vpcwatch scan``."""
    if name.endswith((".json.gz", ".json")):
        return Kind.CLOUDTRAIL
    return kind_of(name, "vpcflow")


def delivery_time(key: str) -> int | None:
    """The delivery window in an AWS object name (epoch seconds), or None."""
    match = DELIVERY.search(key)
    if match is None:
        return None
    try:
        moment = datetime.strptime(match[1], "%Y%m%dT%H%M").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(moment.timestamp())


def name_context(name: str) -> tuple[str | None, str | None]:
    """The account and region an AWS object name starts with (None, None if it does not)."""
    match = NAME_CONTEXT.match(name)
    return (match[1], match[2]) if match else (None, None)
