"""The Kafka-compatible log: producing events durably and following topics from an offset."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import InvalidConfigurationError, TopicAlreadyExistsError

from adapters import broker_compat
from domain import events
from domain.settings import Settings
from domain.topology import BROKER_SPECIFIC, FAUST_INTERNAL, TOPICS

log = logging.getLogger(__name__)
broker_compat.install()

# One message may carry up to this many bytes; data chunks stay below it (params ingest.max_chunk_bytes).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def declared_topics(settings: Settings) -> dict[str, dict[str, str]]:
    """Every topic of the topology and Faust's own, by its name on the broker, with its settings."""
    declared = {settings.topic(topic.name): dict(topic.config) for topic in TOPICS}
    declared.update({f"{settings.deployment}-{topic.name}": dict(topic.config) for topic in FAUST_INTERNAL})
    return declared


async def create_topics(settings: Settings) -> list[str]:
    """Create every declared topic with its settings (idempotent), before any process starts; a topic
    that exists with other settings (an older deployment's, or the broker's defaults) gets the
    declared ones. Settings the broker does not have (topology.BROKER_SPECIFIC) are left out for it.
    Returns the topics created."""
    declared = declared_topics(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in declared if name not in existing]
        refused = await _create(admin, {name: declared[name] for name in missing})
        if refused:
            log.warning("the broker has no %s: topics %s created without it", sorted(BROKER_SPECIFIC), refused)
            await _create(admin, {name: _without_broker_specific(declared[name]) for name in refused}, strict=True)
        found = [name for name in declared if name in existing]
        if found:
            current = await topic_configs(admin, found)
            # Only what the broker reports can differ; a setting it does not have is not reported.
            stale = {name: {k: v for k, v in declared[name].items() if k in current[name]} for name in found}
            stale = {name: wanted for name, wanted in stale.items()
                     if any(current[name][k] != v for k, v in wanted.items())}
            if stale:
                log.warning("topics %s: applying the declared settings", sorted(stale))
                await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs=wanted)
                                           for name, wanted in stale.items()])
        return missing
    finally:
        await admin.close()


async def _create(admin: AIOKafkaAdminClient, topics: dict[str, dict[str, str]], strict: bool = False) -> list[str]:
    """Create topics; returns those refused for an unknown setting (unless strict: then it raises)."""
    if not topics:
        return []
    try:
        response = await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1,
                                                       topic_configs=config) for name, config in topics.items()])
    except TopicAlreadyExistsError:  # another process created them first
        return []
    refused = []
    for name, error_code, *rest in response.topic_errors:
        if error_code in (0, TopicAlreadyExistsError.errno):
            continue
        if error_code == InvalidConfigurationError.errno and not strict:
            refused.append(name)
        else:
            raise RuntimeError(f"could not create topic {name}: error {error_code} {rest[-1] if rest else ''}")
    return refused


def _without_broker_specific(config: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in config.items() if key not in BROKER_SPECIFIC}


async def topic_configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    """The settings in effect on the broker for each named topic."""
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    found: dict[str, dict[str, str]] = {}
    for response in responses:
        for error_code, error_message, _, name, entries in response.resources:
            if error_code:
                raise RuntimeError(f"describe configs of {name}: error {error_code} {error_message}")
            found[name] = {entry[0]: entry[1] for entry in entries}
    return found


class EventLog:
    """A durable producer: send() returns only once the broker has the record (acks=all)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.broker,
            acks="all",
            enable_idempotence=True,
            compression_type=None,
            max_request_size=MAX_MESSAGE_BYTES + 65536,
            linger_ms=0,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, event: events.Event) -> int:
        """Append an event to its topic; returns its offset."""
        return await self.send(event.TOPIC.name, event.key(), event.to_bytes())

    async def send(self, topic: str, key: str, value: bytes, headers: list | None = None) -> int:
        metadata = await self._producer.send_and_wait(
            self.settings.topic(topic), value=value, key=key.encode(), headers=headers
        )
        return metadata.offset


class Tail:
    """Reads some one-partition topics without a consumer group, each under a label of the caller's:
    from an offset or from the live end (`records`), or only where each ends (`ends`). Used by the
    SSE stream and the API's broker health check; `stop` closes its consumer."""

    def __init__(self, settings: Settings, topics: dict[str, str]):
        """`topics`: label -> topic name (without the deployment prefix)."""
        self.partitions = {TopicPartition(settings.topic(topic), 0): label for label, topic in topics.items()}
        self._consumer = AIOKafkaConsumer(bootstrap_servers=settings.broker, enable_auto_commit=False)

    async def start(self) -> None:
        await self._consumer.start()

    async def follow(self, offset: int | None) -> None:
        """Read every topic from `offset` on (None: from its end, only what comes next)."""
        self._consumer.assign(list(self.partitions))
        if offset is None:
            await self._consumer.seek_to_end(*self.partitions)
        else:
            for partition in self.partitions:
                self._consumer.seek(partition, offset)

    async def records(self, timeout_s: float, max_records: int) -> list[tuple[str, int, bytes]]:
        """The next records as (label, offset, value), waiting up to timeout_s; [] if none came."""
        batches = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return [(self.partitions[partition], record.offset, record.value)
                for partition, records in batches.items() for record in records]

    async def ends(self) -> dict[str, int]:
        """Each topic's end offset, by label."""
        ends = await self._consumer.end_offsets(list(self.partitions))
        return {self.partitions[partition]: end for partition, end in ends.items()}

    async def stop(self) -> None:
        await self._consumer.stop()


async def end_offset(settings: Settings, topic: str) -> int:
    """The offset the next record of a one-partition topic will get."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.broker, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(settings.topic(topic), 0)
        return (await consumer.end_offsets([partition]))[partition]
    finally:
        await consumer.stop()


class Follower:
    """Applies every record of one topic, in order, from a given offset, to a handler.

    It remembers the next offset to read, so a projection that stores that number with its state
    resumes exactly where it stopped; `wait_for(offset)` gives read-your-writes to a caller that
    has just produced a record at that offset.
    """

    def __init__(self, settings: Settings, topic: str, handler: Callable[[int, bytes, bytes | None], Awaitable[None] | None],
                 start_offset: int = 0):
        self.settings = settings
        self.topic = topic
        self.handler = handler
        self.position = start_offset
        self._partition = TopicPartition(settings.topic(topic), 0)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self._advanced = asyncio.Condition()
        self.failure: str | None = None  # why the last fetch failed, until one succeeds

    async def start(self, from_offset: int | None = None) -> None:
        """Begin applying records, at `from_offset` when given (e.g. a projection's stored offset)."""
        if from_offset is not None:
            self.position = from_offset
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.broker,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=MAX_MESSAGE_BYTES * 2,
        )
        await self._consumer.start()
        self._consumer.assign([self._partition])
        self._consumer.seek(self._partition, self.position)
        self._task = asyncio.create_task(self._run(), name=f"follow:{self.topic}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._consumer:
            await self._consumer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        delay = 0.5
        while True:
            try:
                batches = await self._consumer.getmany(self._partition, timeout_ms=200, max_records=500)
            except Exception as error:  # a failed fetch: the position is kept and the fetch tried again
                self.failure = f"{type(error).__name__}: {error}"
                log.warning("%s: fetching at offset %d failed (%s); retrying in %.1f s",
                            self.topic, self.position, self.failure, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                self._consumer.seek(self._partition, self.position)
                continue
            self.failure, delay = None, 0.5
            for record in batches.get(self._partition, []):
                try:
                    result = self.handler(record.offset, record.value, record.key)
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:  # one bad record must not stop the projection
                    log.exception("%s: record at offset %s could not be applied", self.topic, record.offset)
                self.position = record.offset + 1
            if batches:
                async with self._advanced:
                    self._advanced.notify_all()

    async def wait_for(self, offset: int, timeout: float = 30.0) -> None:
        """Return once the record at `offset` has been applied."""
        async with self._advanced:
            await asyncio.wait_for(self._advanced.wait_for(lambda: self.position > offset), timeout)

    async def catch_up(self, timeout: float = 60.0) -> None:
        """Return once everything on the topic at call time has been applied."""
        assert self._consumer is not None
        end = (await self._consumer.end_offsets([self._partition]))[self._partition]
        if end > 0:
            await self.wait_for(end - 1, timeout)


class RecordsGone(LookupError):
    """Wanted records are no longer on the topic: removed by retention, or a new (empty) broker."""


async def read_range(settings: Settings, topic: str, first: int | None = None, last: int | None = None,
                     idle_timeout_s: float = 30.0):
    """Yield (offset, key, value) of a one-partition topic from `first` to `last` inclusive (None: the
    topic's first or last record), in one forward pass with one consumer. RecordsGone when part of the
    range is not on the topic (retrying will not bring it back); TimeoutError when the broker sends
    nothing for idle_timeout_s (it may answer later)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.broker, enable_auto_commit=False,
        fetch_max_bytes=32 * 1024 * 1024, max_partition_fetch_bytes=MAX_MESSAGE_BYTES * 2,
    )
    await consumer.start()
    try:
        partition = TopicPartition(settings.topic(topic), 0)
        consumer.assign([partition])
        start = (await consumer.beginning_offsets([partition]))[partition]
        end = (await consumer.end_offsets([partition]))[partition]
        first = start if first is None else first
        last = end - 1 if last is None else last
        if last < first:
            return
        if first < start or last >= end:
            raise RecordsGone(f"{topic}: offsets {first}..{last} wanted, the topic holds {start}..{end - 1}")
        consumer.seek(partition, first)
        position = first
        while position <= last:
            records = (await consumer.getmany(partition, timeout_ms=int(idle_timeout_s * 1000),
                                              max_records=100)).get(partition, [])
            if not records:
                raise TimeoutError(f"{topic}: nothing read at offset {position} in {idle_timeout_s:.0f} s")
            for record in records:
                if record.offset <= last:
                    yield record.offset, record.key, record.value
                position = record.offset + 1
    finally:
        await consumer.stop()


async def scan(settings: Settings, topic: str, offsets: set[int]):
    """Yield (offset, value) for the wanted offsets of a one-partition topic, in log order, in one
    forward pass (used to assemble a version's snapshot from its chunks)."""
    if not offsets:
        return
    async for offset, _, value in read_range(settings, topic, min(offsets), max(offsets)):
        if offset in offsets:
            yield offset, value
