"""Request bodies read within bounds: JSON only, at most so many bytes, at no less than a minimum pace.

A body is read before any ingest slot is taken, into a spooled file (memory up to `spool_bytes`, disk
beyond), so neither a slow sender nor a crowd of large bodies holds memory or a slot while it arrives.
The pace rule is the one HTTP servers use against slow senders: after a grace period the body must have
arrived at `min_bytes_per_s` on average; a sender that falls behind gets 408 and its connection is closed.
"""
from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import ClientDisconnect, Request


@dataclass(frozen=True)
class BodyLimits:
    max_bytes: int
    grace_s: float
    min_bytes_per_s: float
    spool_bytes: int


class BodyRefused(Exception):
    """The request's body breaks a bound; `close` asks to drop the connection after the answer."""

    def __init__(self, status: int, detail: str, close: bool = False):
        super().__init__(detail)
        self.status, self.detail, self.close = status, detail, close


def is_json(content_type: str | None) -> bool:
    """application/json or a JSON-based type (application/problem+json), parameters allowed."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise BodyRefused(400, f"Content-Length: {value!r} is not a byte count")
    return int(value)


async def read_body(request: Request, limits: BodyLimits, tmp_dir: Path) -> tempfile.SpooledTemporaryFile:
    """The whole body, checked against the limits, in a spooled file positioned at its start."""
    if not is_json(request.headers.get("content-type")):
        raise BodyRefused(415, f"Content-Type: {request.headers.get('content-type') or 'none'} is not accepted; "
                               "send the body as application/json")
    declared = declared_length(request)
    if declared is not None and declared > limits.max_bytes:
        # Answered before reading: the server discards the rest of the body as it arrives.
        raise BodyRefused(413, f"body: {declared:,} bytes is over the limit of {limits.max_bytes:,} bytes")
    loop = asyncio.get_running_loop()
    started = loop.time()
    spool = tempfile.SpooledTemporaryFile(max_size=limits.spool_bytes, dir=tmp_dir)
    received = 0
    chunks = request.stream().__aiter__()
    try:
        while True:
            allowed = started + limits.grace_s + received / limits.min_bytes_per_s - loop.time()
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), timeout=max(allowed, 0.0))
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise BodyRefused(408, f"body: {received:,} bytes arrived in {loop.time() - started:.0f} s; "
                                       f"a body must arrive at {limits.min_bytes_per_s:,.0f} bytes/s or faster "
                                       f"after the first {limits.grace_s:.0f} s", close=True) from None
            received += len(chunk)
            if received > limits.max_bytes:
                raise BodyRefused(413, f"body: over the limit of {limits.max_bytes:,} bytes", close=True)
            spool.write(chunk)
    except ClientDisconnect:
        spool.close()
        raise BodyRefused(400, "the client went away before sending the whole body", close=True) from None
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool
