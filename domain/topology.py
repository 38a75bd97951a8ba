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

Every topic is kept forever: replaying the log from offset 0 is how every piece of state is rebuilt
(the API's projections, the pipeline's own progress, the Faust tables), so no record may age out, as
it would under a broker's default retention (7 days in Redpanda and Kafka). Each topic's settings
are declared here and applied by adapters.broker.create_topics, when it creates the topic and to a
topic found with other settings.
"""
from __future__ import annotations

from dataclasses import dataclass

TopicConfig = tuple[tuple[str, str], ...]

# Redpanda acknowledges an acks=all write once it is fsynced only while the topic's write caching is
# off, and its dev-container mode (compose) turns caching on by default: each topic turns it off. A
# broker without this setting (noida-db, the local stack's in-memory broker) gets the topic without it.
DURABLE_WRITES = ("write.caching", "false")
BROKER_SPECIFIC = frozenset({"write.caching"})

KEPT_FOREVER: TopicConfig = (("cleanup.policy", "delete"), ("retention.ms", "-1"), ("retention.bytes", "-1"),
                             DURABLE_WRITES)
# A table's changelog needs only the latest value of each key, kept forever as well.
COMPACTED: TopicConfig = (("cleanup.policy", "compact"), ("retention.ms", "-1"), ("retention.bytes", "-1"),
                          DURABLE_WRITES)


@dataclass(frozen=True)
class Topic:
    name: str
    key: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    partitions: int = 1
    config: TopicConfig = KEPT_FOREVER


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
FAUST_INTERNAL: tuple[Topic, ...] = tuple(
    Topic(f"{FAUST_APP}-{table}-changelog", "version", ("processors.faust_app",),
          ("processors.faust_app (table recovery)",), config=COMPACTED)
    for table in FAUST_TABLES
) + (Topic(f"{FAUST_APP}-__assignor-__leader", "", ("processors.faust_app",), ("processors.faust_app",)),)
