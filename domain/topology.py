"""Who writes and who reads which topic: the system's topology, declared once.

    POST /data/batch ──► ingest.data     (Arrow IPC chunks, key version/table/batch_id)
                    └──► ingest.control  (BatchReceived, key version)
    POST /data/commit ─► ingest.control  (CommitRequested, key version)
    ingest.control ──► [faust + sealer: the version's ledger folded from the log] ──► versions (VersionSealed,
                       key version), or ingest.control (SealFailed: the version opens again)
    versions ──► [pipeline consumer: validate, drift, decide, train, deploy] ──► pipeline
    ingest.control + pipeline ──► [API projections: ledger, catalog, registry, monitoring,
                                   experiments, status] ──► HTTP reads

Every topic has one partition: each is a total order (commit after its batches, stages in
sequence), and the volumes (tens of messages per second at peak) do not need more.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    key: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    partitions: int = 1


INGEST_DATA = Topic("ingest.data", "version/table/batch_id", ("api",), ("processors.sealer",))
INGEST_CONTROL = Topic(
    "ingest.control", "version", ("api", "processors.sealer (SealFailed)"),
    ("processors.faust_app", "processors.sealer", "api.projections.ledger"),
)
VERSIONS = Topic("versions", "version", ("processors.sealer",), ("pipeline.consumer",))
PIPELINE = Topic(
    "pipeline", "version", ("pipeline.consumer",),
    ("pipeline.consumer (own state on restart)", "api.projections"),
)

TOPICS: tuple[Topic, ...] = (INGEST_DATA, INGEST_CONTROL, VERSIONS, PIPELINE)

# The Faust processor's own topics (its app id is "<deployment>-processors"): the changelogs of its
# rocksdb tables and its partition-assignor topic. Created up front with the others, because Faust's
# own topic creation uses a request some Kafka-compatible brokers reject.
FAUST_APP = "processors"
FAUST_TABLES = ("first_offsets",)  # version -> offset of its first control event
FAUST_INTERNAL = tuple(f"{FAUST_APP}-{table}-changelog" for table in FAUST_TABLES) + (
    f"{FAUST_APP}-__assignor-__leader",
)
