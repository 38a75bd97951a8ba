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


@dataclass(frozen=True)
class Event:
    TOPIC: ClassVar[topology.Topic]
    SCHEMA: ClassVar[int] = 1

    def key(self) -> str:
        return getattr(self, "version")

    def to_bytes(self) -> bytes:
        body = dataclasses.asdict(self)
        return orjson.dumps({"type": type(self).__name__, "schema": self.SCHEMA, "data": body})


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
    TOPIC: ClassVar = topology.PIPELINE
    version: str
    stage: str
    error: str
    finished_at: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (BatchReceived, CommitRequested, VersionSealed, StageStarted, StageFinished,
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
