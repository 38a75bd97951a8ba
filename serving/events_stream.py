"""GET /events: the log's events as Server-Sent Events, from the live end or from given offsets.

Each subscriber has its own broker consumer, so their number is bounded (`Subscribers`); the consumer
is closed when the response ends, however it ends (the client leaving cancels the stream), and a
heartbeat comment goes out whenever nothing else did, so a connection that died silently is noticed
at the next write.
"""
from __future__ import annotations

from collections.abc import Callable

import anyio
import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from adapters.broker import Tail
from domain import events, topology
from domain.settings import Settings

STREAMED = {"control": topology.INGEST_CONTROL.name, "versions": topology.VERSIONS.name,
            "pipeline": topology.PIPELINE.name}


class Subscribers:
    """How many streams are open, and whether one more may be."""

    def __init__(self, limit: int):
        self.limit = limit
        self.open = 0

    def enter(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def leave(self) -> None:
        self.open -= 1


def _summary(event: events.Event) -> dict:
    body = dict(event.__dict__)
    body.pop("chunk_offsets", None)  # log positions of data chunks: noise for a reader
    return body


class EventStreamResponse(StreamingResponse):
    """The chosen topics as SSE frames. start=None: only new events; else from that offset of each."""

    def __init__(self, settings: Settings, topics: list[str], start: int | None, heartbeat_s: float,
                 on_close: Callable[[], None]):
        self.settings, self.start, self.heartbeat_s, self.on_close = settings, start, heartbeat_s, on_close
        self.tail = Tail(settings, {name: STREAMED[name] for name in topics})
        super().__init__(self._frames(), media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Outside the stream's own cancel scope (which the client leaving cancels), and shielded from a
            # cancellation of the response itself (the server stopping): the consumer is always stopped.
            with anyio.CancelScope(shield=True):
                await self.tail.stop()
            self.on_close()

    async def _frames(self):
        await self.tail.start()
        await self.tail.follow(self.start)
        yield b": connected\n\n"
        while True:
            records = await self.tail.records(self.heartbeat_s, max_records=200)
            if not records:
                yield b": heartbeat\n\n"
                continue
            for name, offset, value in records:
                try:
                    event = events.from_bytes(value)
                except events.UnknownEvent:
                    continue
                payload = orjson.dumps({"topic": name, "offset": offset, "type": type(event).__name__,
                                        "event": _summary(event)})
                yield (f"id: {name}:{offset}\nevent: {type(event).__name__}\n".encode()
                       + b"data: " + payload + b"\n\n")
