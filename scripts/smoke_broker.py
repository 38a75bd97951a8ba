"""Smoke check of a Kafka-compatible broker with aiokafka: what the service relies on.

    python scripts/smoke_broker.py [host:port]      (default: $LAL_BROKER or 127.0.0.1:9092)

Creates a throw-away topic with the admin client, produces with acks=all and an idempotent
producer, checks offsets are dense and start at 0, reads everything back from the beginning,
commits a group offset and reads it back, and runs one transaction. Exit code 0 = all good.
"""
from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def main(broker: str) -> None:
    topic = f"smoke.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        assert topic in await admin.list_topics(), "topic not listed after create"
    finally:
        await admin.close()
    print(f"[broker] created {topic}")

    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all", enable_idempotence=True, linger_ms=0)
    await producer.start()
    try:
        offsets = []
        for i in range(20):
            meta = await producer.send_and_wait(topic, key=b"k", value=f"v{i}".encode() * 1000)
            offsets.append(meta.offset)
        big = await producer.send_and_wait(topic, key=b"big", value=b"x" * (900 * 1024))
        offsets.append(big.offset)
    finally:
        await producer.stop()
    assert offsets == list(range(21)), f"offsets not dense from 0: {offsets}"
    print("[broker] idempotent acks=all produce: offsets 0..20 OK (incl. a 900 KiB record)")

    group = f"smoke-{uuid.uuid4().hex[:6]}"
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 21 and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                got.extend(r.offset for r in records)
        assert got == list(range(21)), f"consumed offsets {got}"
        tp = TopicPartition(topic, 0)
        await consumer.commit({tp: 21})
        assert await consumer.committed(tp) == 21
        end = (await consumer.end_offsets([tp]))[tp]
        assert end == 21, f"end offset {end}"
    finally:
        await consumer.stop()
    print("[broker] consume from earliest, group commit, end_offsets OK")

    tx = AIOKafkaProducer(bootstrap_servers=broker, transactional_id=f"smoke-tx-{uuid.uuid4().hex[:6]}")
    await tx.start()
    try:
        async with tx.transaction():
            await tx.send(topic, key=b"tx", value=b"in-transaction")
    finally:
        await tx.stop()
    reader = AIOKafkaConsumer(bootstrap_servers=broker, isolation_level="read_committed",
                              enable_auto_commit=False)
    await reader.start()
    try:
        reader.assign([TopicPartition(topic, 0)])
        await reader.seek_to_beginning()
        values = []
        deadline = time.monotonic() + 20
        while b"in-transaction" not in values and time.monotonic() < deadline:
            for records in (await reader.getmany(timeout_ms=500)).values():
                values.extend(r.value for r in records)
        assert b"in-transaction" in values, "committed transactional record not visible"
    finally:
        await reader.stop()
    print("[broker] transaction committed and visible to read_committed OK")

    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    except Exception as error:  # deleting is a nicety
        print(f"[broker] (delete_topics not supported: {error})")
    finally:
        await admin.close()


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("LAL_BROKER", "127.0.0.1:9092")
    asyncio.run(main(target))
    print("[broker] all checks passed")
