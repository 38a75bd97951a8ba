"""GET /events: the log's events as Server-Sent Events, from the live end or from given offsets."""
from __future__ import annotations

import asyncio

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from domain import events, topology
from domain.settings import Settings

STREAMED = {"control": topology.INGEST_CONTROL.name, "versions": topology.VERSIONS.name,
            "pipeline": topology.PIPELINE.name}


def _summary(event: events.Event) -> dict:
    body = dict(event.__dict__)
    body.pop("chunk_offsets", None)  # log positions of data chunks: noise for a reader
    return body


async def stream(settings: Settings, topics: list[str], start: int | None, heartbeat_s: float = 15.0):
    """Yield SSE frames for the chosen topics. start=None: only new events; else from that offset."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.broker, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = {TopicPartition(settings.topic(STREAMED[name]), 0): name for name in topics}
        consumer.assign(list(partitions))
        if start is None:
            await consumer.seek_to_end(*partitions)
        else:
            for partition in partitions:
                consumer.seek(partition, start)
        yield b": connected\n\n"
        while True:
            batches = await consumer.getmany(timeout_ms=int(heartbeat_s * 1000), max_records=200)
            if not batches:
                yield b": heartbeat\n\n"
                continue
            for partition, records in batches.items():
                for record in records:
                    try:
                        event = events.from_bytes(record.value)
                    except events.UnknownEvent:
                        continue
                    payload = orjson.dumps({"topic": partitions[partition], "offset": record.offset,
                                            "type": type(event).__name__, "event": _summary(event)})
                    yield (f"id: {partitions[partition]}:{record.offset}\nevent: {type(event).__name__}\n".encode()
                           + b"data: " + payload + b"\n\n")
    except asyncio.CancelledError:
        raise
    finally:
        await consumer.stop()
