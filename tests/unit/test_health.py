"""Readiness from the broker's answers and the projections' lag, and /events streams that close."""
from __future__ import annotations

import asyncio
import contextlib

import pytest

import adapters.broker
from domain.settings import settings
from serving import events_stream
from serving.runtime import Runtime


class Broker:
    """Stands in for the health check's Tail: answers the topics' ends, or hangs like a paused broker."""

    def __init__(self):
        self.topic_ends: dict[str, int] | None = {}

    async def ends(self):
        if self.topic_ends is None:
            await asyncio.sleep(3600)
        return dict(self.topic_ends)


@contextlib.asynccontextmanager
async def runtime_with(broker: Broker):
    """A runtime that looks at this broker, as if it had connected (its producer is never started)."""
    runtime = Runtime(settings())
    runtime.health_params = {**runtime.health_params, "broker_timeout_s": 0.05, "max_lag": 10}
    runtime._health_tail = broker
    runtime.started = True
    try:
        yield runtime
    finally:
        await runtime.event_log.stop()


def test_ready_only_while_the_broker_answers_and_projections_keep_up():
    async def scenario():
        broker = Broker()
        async with runtime_with(broker) as runtime:
            await runtime._look_at_broker()
            assert runtime.degraded() == []
            broker.topic_ends = None  # paused: the look times out
            await runtime._look_at_broker()
            [problem] = runtime.degraded()
            assert "unreachable since" in problem and "TimeoutError" in problem
            broker.topic_ends = {"ingest.control": 50}  # back, with 50 control records the ledger has not applied
            await runtime._look_at_broker()
            [problem] = runtime.degraded()
            assert problem == "projection of ingest.control: 50 records behind the log"
            runtime.ledger_follower.position = 45
            await runtime._look_at_broker()
            assert runtime.degraded() == []
    asyncio.run(scenario())


def test_not_ready_before_connecting_nor_when_the_broker_was_not_looked_at_lately():
    async def scenario():
        async with runtime_with(Broker()) as runtime:
            runtime.started = False
            assert runtime.degraded() == ["still connecting to the event log"]
            runtime.started = True
            assert "not checked" in runtime.degraded()[0]  # never looked at
    asyncio.run(scenario())


def test_a_version_to_send_again_is_a_notice_not_unreadiness():
    from domain import events

    async def scenario():
        async with runtime_with(Broker()) as runtime:
            await runtime._look_at_broker()
            for offset, event in enumerate([events.CommitRequested(version="v1"),
                                            events.SealFailed(version="v1", commit_offset=0, reason="gone")]):
                runtime.ledger.apply(offset, event.to_bytes())
            runtime.ledger_follower.position = 2
            assert runtime.degraded() == []
            assert runtime.notices() == [
                "version 'v1' could not be sealed (gone): send its batches and commit it again"]
    asyncio.run(scenario())


class Consumer:
    """Stands in for a subscriber's broker consumer: nothing to read; records whether it was stopped."""

    instances: list[Consumer] = []

    def __init__(self, **kwargs):
        self.stopped = False
        Consumer.instances.append(self)

    async def start(self):
        pass

    def assign(self, partitions):
        pass

    async def seek_to_end(self, *partitions):
        pass

    async def getmany(self, timeout_ms, max_records):
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    async def stop(self):
        await asyncio.sleep(0.01)  # an await that the client's leaving would cancel if not shielded
        self.stopped = True


@pytest.fixture
def consumers(monkeypatch):
    Consumer.instances.clear()
    monkeypatch.setattr(adapters.broker, "AIOKafkaConsumer", Consumer)
    return Consumer.instances


def test_a_stream_sends_heartbeats_and_closes_its_consumer_when_the_client_goes(consumers):
    subscribers = events_stream.Subscribers(limit=1)
    sent: list[bytes] = []

    async def scenario():
        assert subscribers.enter() and not subscribers.enter()  # the second is over the limit
        response = events_stream.EventStreamResponse(settings(), ["pipeline"], None, heartbeat_s=0.05,
                                                     on_close=subscribers.leave)
        gone = asyncio.Event()

        async def receive():
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message.get("body", b""))
            if sent.count(b": heartbeat\n\n") == 2:
                gone.set()

        scope = {"type": "http", "asgi": {"spec_version": "2.3"}, "method": "GET", "path": "/events"}
        await asyncio.wait_for(response(scope, receive, send), timeout=5)

    asyncio.run(scenario())
    assert b": connected\n\n" in sent and sent.count(b": heartbeat\n\n") >= 2
    assert consumers[0].stopped and subscribers.open == 0 and subscribers.enter()
