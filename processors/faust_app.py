"""The Faust processor: follows ingest.control and seals each version on its first commit.
Run: `python -m bootstrap worker -l info`.

Its one table maps a version to the offset of its first control event, where the sealer starts folding
the version's ledger from the log (processors/sealer.py): one small record per version, whatever the
number of batches. A commit is acknowledged only once its outcome is on the log (VersionSealed on
versions, or SealFailed on ingest.control, each acknowledged by the broker): a seal that fails for a
passing reason is retried until it succeeds, so a commit is never dropped by an outage.
"""
from __future__ import annotations

import logging

import faust

from adapters import broker_compat
from adapters.storage import ObjectStore
from domain import events, topology
from domain.settings import settings
from processors import sealer

log = logging.getLogger(__name__)
config = settings()
broker_compat.install()
FAUST_DIR = config.layout.faust_state()
FAUST_DIR.mkdir(parents=True, exist_ok=True)

app = faust.App(
    f"{config.deployment}-{topology.FAUST_APP}",
    broker=f"kafka://{config.broker}",
    store="rocksdb://",
    datadir=str(FAUST_DIR),
    topic_partitions=1,
    topic_replication_factor=1,
    web_enabled=False,
    producer_acks=-1,
    consumer_auto_offset_reset="earliest",
    broker_max_poll_records=100,
    stream_wait_empty=False,
    # Static group membership: a worker restarted after kill -9 takes its partitions back at once,
    # instead of waiting for the broker to expire the dead member (noida-db never does).
    consumer_group_instance_id=f"{config.deployment}-{topology.FAUST_APP}-0",
)

control_topic = app.topic(config.topic(topology.INGEST_CONTROL.name), key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw")
versions_topic = app.topic(config.topic(topology.VERSIONS.name), key_type=bytes, value_type=bytes,
                           key_serializer="raw", value_serializer="raw")

first_offsets = app.Table(topology.FAUST_TABLES[0], partitions=1)

_store: ObjectStore | None = None


def store() -> ObjectStore:
    global _store
    if _store is None:
        _store = ObjectStore(config)
    return _store


@app.agent(control_topic)
async def follow_control(stream):
    """Remembers where each version starts on the log, and seals it on its first commit."""
    async for record in stream.events():
        offset = record.message.offset
        try:
            event = events.from_bytes(record.value)
        except events.UnknownEvent:
            log.exception("skipping an event this processor does not understand at offset %s", offset)
            continue
        version = event.version  # type: ignore[attr-defined]
        if first_offsets.get(version) is None:
            first_offsets[version] = offset
        if isinstance(event, events.CommitRequested):
            first = first_offsets[version]
            try:
                await sealer.until_done(lambda: seal_and_announce(version, first, offset),
                                        f"sealing {version} (commit at offset {offset})")
            except Exception:  # a defect: logged with its cause; the next versions are still sealed
                log.exception("version %s: commit at offset %s could not be handled", version, offset)


async def seal_and_announce(version: str, first: int, commit: int) -> None:
    outcome = await sealer.seal_commit(config, store(), version, first, commit)
    if outcome is None:
        return
    topic = versions_topic if isinstance(outcome, events.VersionSealed) else control_topic
    # Sent now, not with the commit's acknowledgement, and awaited until the broker has it (acks=all).
    delivery = await topic.send(key=version.encode(), value=outcome.to_bytes(), force=True)
    await delivery

