"""The Faust processor: folds ingest.control into per-version ledgers (rocksdb tables) and seals
each version on its first commit. Run: `python -m processors.faust_app worker -l info`."""
from __future__ import annotations

import asyncio
import logging

import faust

from adapters import broker_compat
from adapters.storage import ObjectStore
from domain import events, topology
from domain.settings import settings
from processors import ledger as ledger_fold
from processors import sealer

log = logging.getLogger(__name__)
config = settings()
broker_compat.install()
FAUST_DIR = config.work_dir / "faust" / config.deployment  # rocksdb state; lives and dies with its log
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

# version -> VersionLedger as a dict; version -> sequence of the VersionSealed it produced.
ledgers = app.Table("ledgers", partitions=1)
sealed = app.Table("sealed", partitions=1)

_store: ObjectStore | None = None


def store() -> ObjectStore:
    global _store
    if _store is None:
        _store = ObjectStore(config)
    return _store


@app.agent(control_topic)
async def fold_control(stream):
    async for record in stream.events():
        try:
            event = events.from_bytes(record.value)
        except events.UnknownEvent:
            log.exception("skipping an event this processor does not understand at offset %s",
                          record.message.offset)
            continue
        version = event.version  # type: ignore[attr-defined]
        previous = ledgers.get(version)
        state, outcome = ledger_fold.apply(
            ledger_fold.VersionLedger.from_dict(previous) if previous else None, record.message.offset, event
        )
        ledgers[version] = state.to_dict()
        if outcome in (ledger_fold.Outcome.REPLACED, ledger_fold.Outcome.REJECTED_CLOSED):
            log.warning("version %s: batch %s/%s %s", version, getattr(event, "table", "?"),
                        getattr(event, "batch_id", "?"), outcome.value)
        # Seal on the first commit, and again after a crash that came between the fold and the seal.
        if isinstance(event, events.CommitRequested) and state.committed and sealed.get(version) is None:
            sealed_event = await seal_or_report(state)
            await versions_topic.send(key=version.encode(), value=sealed_event.to_bytes())
            sealed[version] = sealed_event.sequence


async def seal_or_report(state: ledger_fold.VersionLedger, attempts: int = 3) -> events.VersionSealed:
    """Seal, retrying passing faults; a version that cannot be sealed is still announced, with the
    error in its manifest, so the pipeline records it as failed instead of waiting for it forever."""
    for attempt in range(1, attempts + 1):
        try:
            return await sealer.seal(config, store(), state)
        except Exception as error:
            log.exception("sealing %s failed (attempt %d)", state.version, attempt)
            last = f"{type(error).__name__}: {error}"
            await asyncio.sleep(2 * attempt)
    return events.VersionSealed(version=state.version, sequence=int(state.commit_offset or 0),
                                snapshot_prefix="", manifest={"seal_error": last, "tables": {}})


if __name__ == "__main__":
    app.main()
