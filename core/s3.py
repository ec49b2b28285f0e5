"""S3 through aiobotocore: listing, downloading, and sorting failures into what they mean.

A failure is one of: access denied (the prefix or object is ``blocked``), gone (deleted
between list and get), or transient (throttling, 5xx, timeouts, resets, a body shorter than
its Content-Length, expired credentials): the object stays ``pending`` and is tried again.
Credentials come only from the botocore chain, or from an STS role assumed with it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioDeferredRefreshableCredentials
from aiobotocore.session import AioSession
from botocore.exceptions import BotoCoreError, ClientError
from botocore.loaders import Loader, create_loader

from core.config import BucketConfig, GeneralConfig

# botocore's DEBUG output includes STS secrets: never let it through.
for _name in ("botocore", "aiobotocore", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

_DENIED = {"AccessDenied", "AllAccessDisabled", "AccountProblem", "InvalidObjectState",
           "InvalidAccessKeyId", "KMS.AccessDeniedException"}
_GONE = {"NoSuchKey", "404", "NotFound"}
_TRANSIENT_403 = {"ExpiredToken", "RequestTimeTooSkewed"}  # fresh credentials or clock fix it


class AccessDenied(Exception):
    """S3 refused access: the prefix or object is blocked (reported, tried again each poll)."""


class Gone(Exception):
    """The object was deleted after it was listed."""


class ShortBody(Exception):
    """The body ended before Content-Length bytes arrived (botocore does not retry this)."""


# What S3 and the network raise for a failure that may pass: S3's error responses (those
# that mean "denied" or "gone" are sorted out by raise_meaning), botocore's connection,
# timeout and credential errors, aiohttp's, and a short body. Anything else is a bug: the
# caller logs its traceback instead of retrying it for ever.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ClientError, BotoCoreError, aiohttp.ClientError, ShortBody, TimeoutError, ConnectionError)


@dataclass(frozen=True)
class Listed:
    key: str
    etag: str
    size: int


def describe(exc: BaseException) -> str:
    """One readable line for an exception from S3 or the network."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = error.get("Code", "error")
        return f"{code} (HTTP {status}): {error.get('Message', '')}".strip().rstrip(":")
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def raise_meaning(exc: ClientError) -> None:
    """Re-raise a ClientError as AccessDenied or Gone when it means that; else return."""
    code = exc.response.get("Error", {}).get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _DENIED or (status == 403 and code not in _TRANSIENT_403):
        raise AccessDenied(describe(exc)) from None
    if code in _GONE:
        raise Gone(describe(exc)) from None


class S3Bucket:
    """One bucket through one aiobotocore client."""

    def __init__(self, client: Any, name: str):
        self.client = client
        self.name = name

    async def children(self, prefix: str) -> list[str]:
        """The names of the 'folders' directly under ``prefix`` (without slashes)."""
        names: list[str] = []
        async for page in self._pages(Prefix=prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                names.append(common["Prefix"][len(prefix) :].rstrip("/"))
        return names

    async def objects(self, prefix: str) -> list[Listed]:
        """Every object under ``prefix``, at any depth (daily and hourly partitions alike)."""
        found: list[Listed] = []
        async for page in self._pages(Prefix=prefix):
            for item in page.get("Contents", []):
                found.append(Listed(item["Key"], item.get("ETag", "").strip('"'), item["Size"]))
        return found

    async def _pages(self, **params: str) -> AsyncIterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            async for page in paginator.paginate(Bucket=self.name, **params):
                yield page
        except ClientError as exc:
            raise_meaning(exc)
            raise

    async def fetch(self, key: str) -> bytes:
        """The whole body of ``key``, checked against its Content-Length."""
        try:
            response = await self.client.get_object(Bucket=self.name, Key=key)
            async with response["Body"] as stream:
                data: bytes = await stream.read()
        except ClientError as exc:
            raise_meaning(exc)
            raise
        expected = response.get("ContentLength")
        if expected is not None and len(data) != expected:
            raise ShortBody(f"body ended after {len(data)} of {expected} bytes")
        return data


@asynccontextmanager
async def open_bucket(bucket: BucketConfig, general: GeneralConfig) -> AsyncIterator[S3Bucket]:
    session = _session(bucket.aws_profile)
    config = AioConfig(
        max_pool_connections=general.concurrency + 4,
        connect_timeout=general.connect_timeout,
        read_timeout=general.read_timeout,
        retries={"mode": "standard", "max_attempts": 4},
        s3={"addressing_style": "path"} if bucket.endpoint_url else None,
    )
    region = session.get_config_variable("region") or "us-east-1"
    if bucket.iam_role_arn:
        session = _role_session(session, bucket, region)
    async with session.create_client(
        "s3", region_name=region, endpoint_url=bucket.endpoint_url, config=config
    ) as client:
        yield S3Bucket(client, bucket.name)


def _session(profile: str | None) -> AioSession:
    """A session (new each poll: it reads the credential chain again) sharing the process's
    loader of botocore's model files."""
    session = AioSession(profile=profile) if profile else AioSession()
    session.register_component("data_loader", _loader(session.get_config_variable("data_path")))
    return session


@functools.cache
def _loader(data_path: str | None) -> Loader:
    """botocore's model files (JSON), read once per process: each new session read them
    again, and a client per bucket and poll then cost 0.2-0.3 CPU-seconds (py-spy, between
    the polls of a collector polling every second)."""
    return create_loader(data_path)


def clock() -> datetime:
    """Now, for the role's credentials (a function of its own so that a test can move it)."""
    return datetime.now(UTC)


def _role_session(source: AioSession, bucket: BucketConfig, region: str) -> AioSession:
    """A session whose credentials are ``iam_role_arn``'s, assumed with ``source``'s on first
    use and again before they expire, so a poll longer than ``iam_role_duration`` (a long
    backfill) goes on; held in memory only."""
    params: dict[str, Any] = {"RoleArn": bucket.iam_role_arn, "RoleSessionName": "vpcwatch"}
    if bucket.external_id:
        params["ExternalId"] = bucket.external_id
    if bucket.iam_role_duration:
        params["DurationSeconds"] = bucket.iam_role_duration

    async def assume() -> dict[str, str]:
        async with source.create_client("sts", region_name=region,
                                        endpoint_url=bucket.sts_endpoint) as sts:
            answer = await sts.assume_role(**params)
        creds = answer["Credentials"]
        return {"access_key": creds["AccessKeyId"], "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"], "expiry_time": creds["Expiration"].isoformat()}

    credentials = AioDeferredRefreshableCredentials(assume, "assume-role", time_fetcher=clock)
    # botocore renews 15 minutes before expiry (10 minutes: it must): for a 15-minute role
    # that would be before every request. Renew in the last third of the role's life.
    life = bucket.iam_role_duration or 3600
    credentials._advisory_refresh_timeout = min(15 * 60, life // 3)
    credentials._mandatory_refresh_timeout = min(10 * 60, life // 6)
    session = _session(bucket.aws_profile)
    session._credentials = credentials  # (botocore's way to give a session refreshing ones)
    return session
