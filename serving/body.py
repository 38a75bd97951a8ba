"""Request bodies read within bounds: JSON only, at most so many bytes, at no less than a minimum pace.

A body is read whole before any ingest slot is taken, so a slow sender holds a connection, never a
slot. Bodies in flight are held in memory up to a budget shared by all requests (`BodyMemory`): a body
whose declared length fits what is left is kept in memory, any other (over the budget, or of unknown
length) goes to a temporary file, so a crowd of large or slow bodies costs disk, not memory. The pace
rule is the one HTTP servers use against slow senders: after a grace period the body must have arrived
at `min_bytes_per_s` on average; a sender that falls behind gets 408 and its connection is closed.
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


class BodyRefused(Exception):
    """The request's body breaks a bound; `close` asks to drop the connection after the answer."""

    def __init__(self, status: int, detail: str, close: bool = False):
        super().__init__(detail)
        self.status, self.detail, self.close = status, detail, close


class BodyMemory:
    """Bytes of request bodies held in memory at once, across requests."""

    def __init__(self, budget: int):
        self.budget = budget
        self.held = 0

    def reserve(self, size: int) -> bool:
        if self.held + size > self.budget:
            return False
        self.held += size
        return True

    def release(self, size: int) -> None:
        self.held -= size


class Body:
    """A body read whole: in memory (its declared length reserved in the budget) or in a temporary file.
    Use it as a context manager: leaving it frees the memory or deletes the file."""

    def __init__(self, memory: BodyMemory, declared: int | None, tmp_dir: Path):
        in_memory = declared is not None and memory.reserve(declared)
        self._memory, self._reserved = memory, declared if in_memory else 0
        # In memory, the chunks as they came (joined once, when read: growing one buffer chunk by chunk
        # copies it over and over, on the event loop).
        self._in_memory: list[bytes] | None = [] if in_memory else None
        self._on_disk = None if in_memory else tempfile.TemporaryFile(dir=tmp_dir)

    def write(self, chunk: bytes) -> None:
        if self._in_memory is not None:
            self._in_memory.append(chunk)
        else:
            self._on_disk.write(chunk)

    def read(self) -> bytes:
        """The whole body, once (call it off the event loop: it is joined, or read back from disk)."""
        if self._in_memory is not None:
            chunks, self._in_memory = self._in_memory, []
            return b"".join(chunks)
        self._on_disk.seek(0)
        return self._on_disk.read()

    def __enter__(self) -> Body:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._in_memory = None
        if self._on_disk is not None:
            self._on_disk.close()
        if self._reserved:
            self._memory.release(self._reserved)
            self._reserved = 0


def is_json(content_type: str | None) -> bool:
    """application/json or a JSON-based type (application/problem+json), parameters allowed."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def json_expected(request: Request) -> bool:
    """A JSON content type, or none at all from a client that is not a web page. A page elsewhere can
    make its visitor's browser post text/plain, a form, or a body with no type, but a browser always
    says which page sent a POST (Origin); a program (curl, a script posting `data=`) sends neither,
    and its untyped body is read as JSON, as FastAPI's own body parsing does."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        return "origin" not in request.headers
    return is_json(content_type)


def declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise BodyRefused(400, f"Content-Length: {value!r} is not a byte count")
    return int(value)


async def read_body(request: Request, limits: BodyLimits, memory: BodyMemory, tmp_dir: Path) -> Body:
    """The whole body, checked against the limits."""
    if not json_expected(request):
        raise BodyRefused(415, f"Content-Type: {request.headers.get('content-type') or 'none'} is not accepted; "
                               "send the body as application/json")
    declared = declared_length(request)
    if declared is not None and declared > limits.max_bytes:
        # Answered before reading: the server discards the rest of the body as it arrives.
        raise BodyRefused(413, f"body: {declared:,} bytes is over the limit of {limits.max_bytes:,} bytes")
    body = Body(memory, declared, tmp_dir)
    loop = asyncio.get_running_loop()
    started = loop.time()
    received = 0
    try:
        async with asyncio.timeout_at(started + limits.grace_s) as pace:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limits.max_bytes:
                    raise BodyRefused(413, f"body: over the limit of {limits.max_bytes:,} bytes", close=True)
                body.write(chunk)
                pace.reschedule(started + limits.grace_s + received / limits.min_bytes_per_s)
    except TimeoutError:
        body.close()
        raise BodyRefused(408, f"body: {received:,} bytes arrived in {loop.time() - started:.0f} s; a body must "
                               f"arrive at {limits.min_bytes_per_s:,.0f} bytes/s or faster after the first "
                               f"{limits.grace_s:.0f} s", close=True) from None
    except ClientDisconnect:
        body.close()
        raise BodyRefused(400, "the client went away before sending the whole body", close=True) from None
    except BaseException:
        body.close()
        raise
    return body
