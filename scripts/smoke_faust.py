"""Smoke check: a minimal Faust app (rocksdb table + one agent) against a Kafka-compatible broker.

    python scripts/smoke_faust.py [host:port] [--no-precreate]

Creates the input/output topics (and, unless --no-precreate, the table's changelog topic and the
assignor topic) with aiokafka's admin client, runs a Faust worker in a subprocess, feeds it
records, checks the agent folded them into the table (the output topic receives running counts),
restarts the worker on the same rocksdb dir and checks the table state survived, then stops.
Exit code 0 = all good.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

APP_SOURCE = '''
import os
import faust

app = faust.App(
    os.environ["SMOKE_APP"],
    broker="kafka://" + os.environ["SMOKE_BROKER"],
    store="rocksdb://",
    datadir=os.environ["SMOKE_DIR"],
    topic_partitions=1,
    topic_replication_factor=1,
    web_enabled=False,
    producer_acks=-1,
    consumer_auto_offset_reset="earliest",
)
src = app.topic(os.environ["SMOKE_IN"], key_type=bytes, value_type=bytes, key_serializer="raw",
                value_serializer="raw")
out = app.topic(os.environ["SMOKE_OUT"], key_type=bytes, value_type=bytes, key_serializer="raw",
                value_serializer="raw")
counts = app.Table("counts", default=int, partitions=1)


@app.agent(src)
async def count(stream):
    async for event in stream.events():
        key = event.key.decode()
        counts[key] += 1
        await out.send(key=event.key, value=str(counts[key]).encode())


if __name__ == "__main__":
    app.main()
'''


async def create(broker: str, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=1, replication_factor=1) for n in names])
    finally:
        await admin.close()


async def produce(broker: str, topic: str, keys: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key in keys:
            await producer.send_and_wait(topic, key=key, value=b"x")
    finally:
        await producer.stop()


async def read_all(broker: str, topic: str, want: int, timeout: float) -> list[tuple[bytes, bytes]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
    await consumer.start()
    got: list[tuple[bytes, bytes]] = []
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout
        while len(got) < want and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend((r.key, r.value) for r in records)
    finally:
        await consumer.stop()
    return got


def start_worker(app_file: Path, env: dict, log: Path, web_port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(app_file), "worker", "-l", "info", "--web-port", str(web_port)],
                            env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def stop_worker(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    precreate = "--no-precreate" not in sys.argv
    broker = args[0] if args else os.environ.get("LAL_BROKER", "127.0.0.1:9092")
    tag = uuid.uuid4().hex[:6]
    app_id = f"smoke-faust-{tag}"
    topic_in, topic_out = f"smoke.in.{tag}", f"smoke.out.{tag}"
    work = Path(tempfile.mkdtemp(prefix="smoke-faust-"))
    app_file = work / "smoke_app.py"
    app_file.write_text(APP_SOURCE)
    log = work / "worker.log"
    env = {**os.environ, "SMOKE_APP": app_id, "SMOKE_BROKER": broker, "SMOKE_DIR": str(work / "state"),
           "SMOKE_IN": topic_in, "SMOKE_OUT": topic_out}
    topics = [topic_in, topic_out]
    if precreate:
        topics += [f"{app_id}-counts-changelog", f"{app_id}-__assignor-__leader"]
    asyncio.run(create(broker, topics))
    print(f"[faust] topics created: {topics}")
    web_port = int(os.environ.get("SMOKE_WEB_PORT", "36066"))
    ok = False
    proc = start_worker(app_file, env, log, web_port)
    try:
        asyncio.run(produce(broker, topic_in, [b"a", b"b", b"a"]))
        got = asyncio.run(read_all(broker, topic_out, 3, timeout=90))
        print(f"[faust] first run output: {got}")
        assert sorted(got) == [(b"a", b"1"), (b"a", b"2"), (b"b", b"1")], got
        stop_worker(proc)
        print("[faust] worker stopped; restarting on the same rocksdb dir")
        proc = start_worker(app_file, env, log, web_port)
        asyncio.run(produce(broker, topic_in, [b"a"]))
        got = asyncio.run(read_all(broker, topic_out, 4, timeout=90))
        print(f"[faust] after restart: {got}")
        assert (b"a", b"3") in got, "table state lost across restart (or the agent re-read its input)"
        assert len(got) == 4, "the agent re-processed records after restart (offsets not committed)"
        ok = True
    except AssertionError as error:
        print(f"[faust] FAILED: {error}")
    finally:
        stop_worker(proc)
        text = log.read_text(errors="replace")
        if not ok:
            print(text[-6000:])
        for line in text.splitlines():
            if "Traceback" in line or "[ERROR]" in line or "CRIT" in line:
                print("[faust] log:", line)
        shutil.rmtree(work, ignore_errors=True)
    print("[faust] all checks passed" if ok else "[faust] checks FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
