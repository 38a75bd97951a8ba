"""Every event that goes on the log: the whole vocabulary of the system, frozen and versioned.

An event is serialised as JSON with its type name and schema version, so a consumer can refuse
what it does not understand instead of misreading it. Each class names its topic; the key is the
data version (or version/table/batch_id for data chunks), which keeps a version's events in order.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from domain import topology

# Brokers refuse a message over 1 MiB by default (Kafka's message.max.bytes, Redpanda's
# kafka_batch_max_bytes). Every event stays under it by construction: what a batch reports about itself
# is cut to a few short strings (domain/tables.py ParseReport), a version's manifest lists counts and a
# few batch numbers, not every batch (domain/ledger.py manifest), and a batch may take at most
# MAX_CHUNKS_PER_BATCH data messages, so its list of offsets is bounded too. Serialising an event over
# the limit raises here, naming the event, instead of being refused by the broker further on.
MAX_EVENT_BYTES = 1_000_000
MAX_CHUNKS_PER_BATCH = 10_000


class EventTooLarge(ValueError):
    pass


@dataclass(frozen=True)
class Event:
    TOPIC: ClassVar[topology.Topic]
    SCHEMA: ClassVar[int] = 1

    def key(self) -> str:
        return getattr(self, "version")

    def to_bytes(self) -> bytes:
        body = dataclasses.asdict(self)
        payload = orjson.dumps({"type": type(self).__name__, "schema": self.SCHEMA, "data": body})
        if len(payload) > MAX_EVENT_BYTES:
            raise EventTooLarge(f"{type(self).__name__} of {self.key()} is {len(payload):,} bytes, over the "
                                f"{MAX_EVENT_BYTES:,} a log message may carry")
        return payload


# --- ingest.control -------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchReceived(Event):
    """A batch was typed and its chunks are durable on ingest.data at the listed offsets."""

    TOPIC: ClassVar = topology.INGEST_CONTROL
    version: str
    table: str
    batch_id: int
    total_batches: int
    rows: int
    content_hash: str
    chunk_offsets: list[int]
    unparseable: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    unknown_columns: list[str] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    received_at: str = ""


@dataclass(frozen=True)
class CommitRequested(Event):
    """A client said the version is complete. Only the first one in log order counts."""

    TOPIC: ClassVar = topology.INGEST_CONTROL
    version: str
    requested_at: str = ""


@dataclass(frozen=True)
class SealFailed(Event):
    """The commit at commit_offset could not be sealed for a reason retrying cannot fix (its data on the
    log is unreadable or undecodable). The version opens again, empty: its batches and a commit can be
    sent anew. Produced by the sealer on this topic, so the ledger folds it in log order."""

    TOPIC: ClassVar = topology.INGEST_CONTROL
    version: str
    commit_offset: int
    reason: str
    failed_at: str = ""


# --- versions ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class VersionSealed(Event):
    """The version's snapshot is written (one Parquet file per table) with its manifest."""

    TOPIC: ClassVar = topology.VERSIONS
    version: str
    sequence: int
    snapshot_prefix: str
    manifest: dict[str, Any]
    sealed_at: str = ""


# --- pipeline ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class StageStarted(Event):
    TOPIC: ClassVar = topology.PIPELINE
    version: str
    stage: str
    started_at: str


@dataclass(frozen=True)
class StageFinished(Event):
    TOPIC: ClassVar = topology.PIPELINE
    version: str
    stage: str
    duration_s: float
    summary: str = ""


@dataclass(frozen=True)
class ValidationFinished(Event):
    TOPIC: ClassVar = topology.PIPELINE
    version: str
    valid: bool
    checks_total: int
    checks_passed: int
    checks_failed: int
    failed_checks: list[dict[str, Any]]
    checks: list[dict[str, Any]] = field(default_factory=list)
    report_key: str = ""
    judged: dict[str, Any] = field(default_factory=dict)  # per table: rows, new and changed rows, new period


@dataclass(frozen=True)
class DriftEvaluated(Event):
    """The version's new part against the known worlds (domain.policy.REFERENCES: `references` names the
    version of each); drift_detected is domain.policy's rule on `scores`. reference_version: the version
    the deployed model was trained on."""

    TOPIC: ClassVar = topology.PIPELINE
    version: str
    reference_version: str | None
    drift_detected: bool
    drift_score: float
    threshold: float
    features: list[dict[str, Any]] = field(default_factory=list)
    report_keys: list[str] = field(default_factory=list)  # S3 keys: Evidently HTML per reference and group, drift.json
    scores: dict[str, float] = field(default_factory=dict)  # per reference compared
    references: dict[str, str | None] = field(default_factory=dict)  # reference -> its version
    judged: dict[str, Any] = field(default_factory=dict)    # rows and periods of each side
    rule: str = ""


@dataclass(frozen=True)
class CatalogPublished(Event):
    """The merged catalog after this version: offers, merchants, customers, user features."""

    TOPIC: ClassVar = topology.PIPELINE
    version: str
    catalog_prefix: str
    content_hash: str
    stats: dict[str, int]
    # First and last day of the new rows this version brought, per dated table: the period the next
    # version's drift is compared with ("previous").
    new_period: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelTrained(Event):
    """One training run (one MLflow run). deployed says whether it replaced the serving model."""

    TOPIC: ClassVar = topology.PIPELINE
    version: str
    model_version: str
    run_id: str
    metrics: dict[str, float]
    params: dict[str, str]
    model_key: str
    features_count: int
    data_hash: str
    deployed: bool
    reason: str
    started_at: str
    comparison: dict[str, Any] = field(default_factory=dict)  # domain.policy.DeployDecision, per-offer APs included


@dataclass(frozen=True)
class ModelDeployed(Event):
    TOPIC: ClassVar = topology.PIPELINE
    version: str
    model_version: str
    run_id: str
    trained_on: str
    metrics: dict[str, float]
    model_key: str
    features_count: int
    data_hash: str
    catalog_prefix: str


@dataclass(frozen=True)
class VersionProcessed(Event):
    """The pipeline is done with a version: what it decided."""

    TOPIC: ClassVar = topology.PIPELINE
    version: str
    valid: bool
    action_taken: str  # domain.policy.Action: "retrained" (the first model too), "none", "skipped"
    data_version: str | None
    finished_at: str
    first_model: bool = False
    decision: dict[str, Any] = field(default_factory=dict)  # the rule's reason and every input it used


@dataclass(frozen=True)
class PipelineFailed(Event):
    """The version ended without an outcome. cause (processors/failures.py): data, code, timeout, or
    unavailable (a peer stayed unreachable past the retry budget: send the version again later)."""

    TOPIC: ClassVar = topology.PIPELINE
    version: str
    stage: str
    error: str
    finished_at: str
    cause: str = ""
    attempts: int = 1


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (BatchReceived, CommitRequested, SealFailed, VersionSealed, StageStarted, StageFinished,
                ValidationFinished, DriftEvaluated, CatalogPublished, ModelTrained, ModelDeployed,
                VersionProcessed, PipelineFailed)
}


class UnknownEvent(ValueError):
    pass


def from_bytes(payload: bytes) -> Event:
    message = orjson.loads(payload)
    cls = EVENT_TYPES.get(message.get("type"))
    if cls is None or message.get("schema") != cls.SCHEMA:
        raise UnknownEvent(f"unknown event {message.get('type')!r} schema {message.get('schema')!r}")
    return cls(**message["data"])
