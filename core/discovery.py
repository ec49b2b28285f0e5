"""Finding what to read in a bucket: accounts, regions, and the objects of each day.

Accounts and regions come from the bucket's own folders (or the config's lists), so every
account of a central bucket is read without any EC2 call. There is no "last key" watermark:
each poll lists every day prefix inside the lookback window, and the ledger decides what is
new, so an object that arrives late under a key that sorts low is still read. List calls per
poll: one per organization/account folder level, plus one (paginated) per partition per day.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import TypeVar

from core.config import BucketConfig
from core.layouts import (
    HIVE_ACCOUNT,
    HIVE_REGION,
    SERVICE_FOLDER,
    Partition,
    default_partition,
    hive_partition,
    kind_of,
)
from core.names import ACCOUNT, ORG, REGION
from core.objects import ObjectRef
from core.s3 import TRANSIENT_ERRORS, AccessDenied, S3Bucket, describe

log = logging.getLogger(__name__)
LIST_CONCURRENCY = 8
T = TypeVar("T")


@dataclass
class Listing:
    """What one poll found in one bucket."""

    objects: list[ObjectRef] = field(default_factory=list)
    blocked: dict[str, str] = field(default_factory=dict)  # prefix -> access denied error
    failed: dict[str, str] = field(default_factory=dict)  # prefix -> transient error
    listed_ok: set[str] = field(default_factory=set)  # prefixes listed without error


async def list_bucket(s3: S3Bucket, bucket: BucketConfig, days: list[date]) -> Listing:
    listing = Listing()
    partitions = await find_partitions(s3, bucket, listing)
    limit = asyncio.Semaphore(LIST_CONCURRENCY)

    async def list_day(partition: Partition, day: date) -> None:
        prefix = partition.day_prefix(day)
        async with limit:
            found = await _guarded(listing, prefix, lambda: s3.objects(prefix))
        for item in found or []:
            listing.objects.append(
                ObjectRef(bucket.name, item.key, item.etag, item.size,
                          kind_of(item.key, bucket.type), partition.account,
                          partition.region, day)
            )

    async with asyncio.TaskGroup() as group:
        for partition in partitions:
            for day in days:
                group.create_task(list_day(partition, day))
    return listing


async def find_partitions(s3: S3Bucket, bucket: BucketConfig, listing: Listing) -> list[Partition]:
    """Every (account, region) folder of the bucket, in either key layout."""
    top = bucket.logs_prefix
    children = await _guarded(listing, top, lambda: s3.children(top)) or []
    if not bucket.aws_organization_id:  # organization trails put o-xxxx/ before accounts
        for org in (name for name in children if ORG.match(name)):
            prefix = f"{top}{org}/"
            children += [f"{org}/{c}" for c in await _guarded(
                listing, prefix, lambda p=prefix: s3.children(p)) or []]
    partitions: list[Partition] = []
    for child in children:
        parent, _, name = f"{top}{child}".rpartition("/")
        parent += "/"
        account = name if ACCOUNT.match(name) else None
        hive = HIVE_ACCOUNT.match(name)
        if hive and bucket.type == "vpcflow":
            account = hive[1]
        if account is None or (bucket.aws_account_id and account not in bucket.aws_account_id):
            continue
        partitions += await _regions(s3, bucket, listing, parent, account, hive is not None)
    return partitions


async def _regions(
    s3: S3Bucket, bucket: BucketConfig, listing: Listing, parent: str, account: str, hive: bool
) -> list[Partition]:
    if hive:
        folder = f"{parent}aws-account-id={account}/aws-service=vpcflowlogs/"
        names = await _guarded(listing, folder, lambda: s3.children(folder)) or []
        regions = [m[1] for m in map(HIVE_REGION.match, names) if m]
        wanted = [r for r in regions if not bucket.regions or r in bucket.regions]
        return [hive_partition(parent, account, region) for region in wanted]
    if bucket.regions:
        regions = list(bucket.regions)
    else:
        folder = f"{parent}{account}/{SERVICE_FOLDER[bucket.type]}/"
        names = await _guarded(listing, folder, lambda: s3.children(folder)) or []
        regions = [name for name in names if REGION.match(name)]
    return [default_partition(parent, account, bucket.type, region) for region in regions]


async def _guarded(listing: Listing, prefix: str, call: Callable[[], Awaitable[T]]) -> T | None:
    """Run a list call; on failure record the prefix (blocked or failed) and go on."""
    try:
        result = await call()
    except AccessDenied as exc:
        log.warning("access denied listing %s: %s", prefix, exc)
        listing.blocked[prefix] = str(exc)
        return None
    except TRANSIENT_ERRORS as exc:  # after botocore's retries: listed again next poll
        log.warning("cannot list %s: %s", prefix, describe(exc))
        listing.failed[prefix] = describe(exc)
        return None
    except Exception as exc:  # a bug: its traceback in the log, the poll's errors say so
        log.exception("listing %s: internal error", prefix)
        listing.failed[prefix] = f"internal error: {describe(exc)}"
        return None
    listing.listed_ok.add(prefix)
    return result
