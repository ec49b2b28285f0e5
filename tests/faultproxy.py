"""A small fault-injecting HTTP proxy on 127.0.0.1 in front of the S3 emulator.

moto cannot produce throttling, 5xx, resets or stalls; this proxy does, for the keys whose
name contains a marker (GETs) and for the listings whose prefix contains one (LIST), a given
number of times. Every fault it injects is counted, so a
test can check that the faults really happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import threading
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

_ERROR = "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"  # noqa: E501
_HOP = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


@dataclass
class Faults:
    """marker in key -> (fault, how many times). Faults: slowdown, error500, reset, stall."""

    by_marker: dict[str, tuple[str, int]] = field(default_factory=dict)
    list_markers: dict[str, tuple[str, int]] = field(default_factory=dict)  # marker in prefix
    # fault -> probability, for every GET of an object / every listing (a soak's weather)
    get_rates: dict[str, float] = field(default_factory=dict)
    list_rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    denied_prefixes: tuple[str, ...] = ()  # lists and gets under these: 403
    denied_gets: tuple[str, ...] = ()  # gets of keys containing these: 403
    stall_seconds: float = 30.0


class FaultProxy:
    def __init__(self, upstream: str, faults: Faults):
        self.upstream = upstream
        self.faults = faults
        self.injected: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()  # list, get, sts
        self.access_keys: list[str] = []  # the access key id each S3 request was signed with
        self._left = {("get", marker): count for marker, (_, count) in faults.by_marker.items()}
        self._left.update({("list", marker): count
                           for marker, (_, count) in faults.list_markers.items()})
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._release: asyncio.Event | None = None
        self._random = random.Random(faults.seed)
        self.url = ""

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        self._release = asyncio.Event()
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._ready.set()
        await self._stop_event.wait()
        self._release.set()
        await self._session.close()
        await runner.cleanup()

    def _fault_for(self, kind: str, target: str) -> str | None:
        rates = self.faults.get_rates if kind == "get" else self.faults.list_rates
        draw = self._random.random()
        for fault, rate in rates.items():
            if draw < rate:
                self.injected[fault if kind == "get" else f"list {fault}"] += 1
                return fault
            draw -= rate
        markers = self.faults.by_marker if kind == "get" else self.faults.list_markers
        for marker, (fault, _) in markers.items():
            if marker in target and self._left.get((kind, marker), 0) > 0:
                self._left[(kind, marker)] -= 1
                self.injected[fault if kind == "get" else f"list {fault}"] += 1
                return fault
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        _, _, rest = request.path.lstrip("/").partition("/")
        target = rest or request.query.get("prefix", "")
        kind = _kind(request, rest)
        self.requests[kind] += 1
        signed = re.search(r"Credential=([A-Z0-9]+)/", request.headers.get("Authorization", ""))
        if signed and kind != "sts":
            self.access_keys.append(signed[1])
        if any(target.startswith(p) for p in self.faults.denied_prefixes) or (
            rest and any(marker in rest for marker in self.faults.denied_gets)
        ):
            self.injected["denied"] += 1
            return _error(403, "AccessDenied", "Access Denied")
        fault = (self._fault_for("get", rest) if rest and request.method == "GET"
                 else self._fault_for("list", target) if kind == "list" else None)
        if fault == "slowdown":
            return _error(503, "SlowDown", "Please reduce your request rate.")
        if fault == "error500":
            return _error(500, "InternalError", "We encountered an internal error.")
        status, headers, body = await self._forward(request)
        if fault in ("reset", "stall") and status == 200:
            return await self._broken_body(request, headers, body, fault)
        return web.Response(status=status, headers=headers, body=body)

    async def _forward(self, request: web.Request) -> tuple[int, dict[str, str], bytes]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers,
            data=await request.read(),
        ) as answer:
            body = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
            return answer.status, out, body

    async def _broken_body(
        self, request: web.Request, headers: dict[str, str], body: bytes, fault: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers=headers)
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        if fault == "stall":  # hold the connection open, silent, past the client's read timeout
            assert self._release is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), self.faults.stall_seconds)
        if request.transport is not None:
            request.transport.abort()  # a reset part-way through the body
        return response


def _kind(request: web.Request, key: str) -> str:
    if request.method == "POST" and request.path == "/":
        return "sts"
    if request.method == "GET" and "list-type" in request.query:
        return "list"
    return request.method.lower() if not key else f"{request.method.lower()} object"


def _error(status: int, code: str, message: str) -> web.Response:
    return web.Response(status=status, content_type="application/xml",
                        text=_ERROR.format(code=code, message=message))
