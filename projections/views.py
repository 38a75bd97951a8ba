"""Read models of the pipeline topic. Each is a small fold: apply(offset, event) in log order.

The API serves its reads from these; the pipeline consumer folds the same views on start to know
what it has already done (which versions, which model is deployed, which catalog is current).
Each view also turns its state into plain JSON-able data and back (state/restore), so it can be
checkpointed with the offset it has applied (projections/checkpoint.py); events are stored in
their own wire format (Event.to_bytes / events.from_bytes).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from domain import events, policy


def _dump(event: events.Event | None) -> dict[str, Any] | None:
    return orjson.loads(event.to_bytes()) if event is not None else None


def _load(message: dict[str, Any] | None) -> Any:
    return events.from_bytes(orjson.dumps(message)) if message is not None else None


class View:
    """Base: remembers the next offset to apply, so a stored view resumes where it stopped."""

    def __init__(self) -> None:
        self.position = 0

    def apply(self, offset: int, event: events.Event) -> None:
        handler = getattr(self, "on_" + type(event).__name__, None)
        if handler is not None:
            handler(event)
        self.position = offset + 1

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    def restore(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


class RegistryView(View):
    """The deployed model, the first one (what it learnt from is the initial world drift is judged
    against), and the numbering of model versions."""

    def __init__(self) -> None:
        super().__init__()
        self.deployed: events.ModelDeployed | None = None
        self.first: events.ModelDeployed | None = None
        self.trained_runs = 0
        self.previous: dict[str, events.ModelDeployed | None] = {}  # version -> the model deployed before it

    def on_ModelTrained(self, event: events.ModelTrained) -> None:
        self.trained_runs += 1

    def on_ModelDeployed(self, event: events.ModelDeployed) -> None:
        self.previous.setdefault(event.version, self.deployed)
        self.deployed = event
        self.first = self.first or event

    def before(self, version: str) -> events.ModelDeployed | None:
        """The model deployed when this version arrived: the current one, unless the version deployed
        its own already (it is being processed again, after a restart or a retry)."""
        return self.previous[version] if version in self.previous else self.deployed

    def next_model_version(self) -> str:
        """"1.0" for the first model, "2.0" after the first retrain, and so on."""
        return f"{self.trained_runs + 1}.0"

    def state(self) -> dict[str, Any]:
        return {"deployed": _dump(self.deployed), "trained_runs": self.trained_runs,
                "previous": {version: _dump(event) for version, event in self.previous.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        self.deployed = _load(state["deployed"])
        self.first = _load(state.get("first"))
        self.trained_runs = state["trained_runs"]
        self.previous = {version: _load(event) for version, event in state.get("previous", {}).items()}


class CatalogView(View):
    """The current data catalog: the merge of every valid version so far; the most recently judged
    valid period (the new transactions of the last valid version that brought any), which the next
    version's drift is compared with; and the versions rejected, whose entities later versions name."""

    def __init__(self) -> None:
        super().__init__()
        self.current: events.CatalogPublished | None = None
        # version -> the catalog and the judged period before it
        self.previous: dict[str, tuple[events.CatalogPublished | None, dict[str, Any] | None]] = {}
        self.judged_period: dict[str, Any] | None = None  # {"version", "transaction": [first, last], ...}
        self.rejected: list[str] = []  # versions rejected by validation, in log order

    def on_ValidationFinished(self, event: events.ValidationFinished) -> None:
        if not event.valid and event.version not in self.rejected:
            self.rejected.append(event.version)

    def on_CatalogPublished(self, event: events.CatalogPublished) -> None:
        self.previous.setdefault(event.version, (self.current, self.judged_period))
        self.current = event
        self.judged_period = policy.judged_period(self.judged_period, event.version, event.new_period)

    def before(self, version: str) -> events.CatalogPublished | None:
        """The catalog this version merges into: the current one, unless the version published its
        own already (it is being processed again, after a restart or a retry)."""
        return self.previous[version][0] if version in self.previous else self.current

    def period_before(self, version: str) -> dict[str, Any] | None:
        """The judged period this version's drift compares with, in the same sense as `before`."""
        return self.previous[version][1] if version in self.previous else self.judged_period

    def rejected_before(self, version: str) -> list[str]:
        return [name for name in self.rejected if name != version]

    def state(self) -> dict[str, Any]:
        return {"current": _dump(self.current), "judged_period": self.judged_period, "rejected": self.rejected,
                "previous": {version: [_dump(event), period] for version, (event, period) in self.previous.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        self.current = _load(state["current"])
        self.judged_period = state.get("judged_period")
        self.rejected = list(state.get("rejected", []))
        self.previous = {version: (_load(event), period)
                         for version, (event, period) in state.get("previous", {}).items()}

class MonitoringView(View):
    """The last validation and drift results, and the decision on each version (action_taken is one
    of domain.policy.Action's values; a version whose pipeline failed changed nothing: "skipped")."""

    def __init__(self) -> None:
        super().__init__()
        self.validation: events.ValidationFinished | None = None
        self.drift: events.DriftEvaluated | None = None
        self.actions: dict[str, str] = {}
        self.last_action: str | None = None
        self.last_decision: dict[str, Any] | None = None  # the last finished version's, with its inputs

    def on_ValidationFinished(self, event: events.ValidationFinished) -> None:
        self.validation = event

    def on_DriftEvaluated(self, event: events.DriftEvaluated) -> None:
        self.drift = event

    def on_VersionProcessed(self, event: events.VersionProcessed) -> None:
        self.actions[event.version] = event.action_taken
        self.last_action = event.action_taken
        self.last_decision = {"version": event.version, "valid": event.valid, "action_taken": event.action_taken,
                              "first_model": event.first_model, **event.decision}

    def on_PipelineFailed(self, event: events.PipelineFailed) -> None:
        self.actions[event.version] = policy.Action.SKIPPED.value
        self.last_action = policy.Action.SKIPPED.value
        self.last_decision = {"version": event.version, "action_taken": self.last_action, "first_model": False,
                              "reason": f"the pipeline failed in {event.stage}: {event.error}", "failed": True}

    def state(self) -> dict[str, Any]:
        return {"validation": _dump(self.validation), "drift": _dump(self.drift), "actions": self.actions,
                "last_action": self.last_action, "last_decision": self.last_decision}

    def restore(self, state: dict[str, Any]) -> None:
        self.validation = _load(state["validation"])
        self.drift = _load(state["drift"])
        self.actions = dict(state["actions"])
        self.last_action = state["last_action"]
        self.last_decision = state.get("last_decision")


class ExperimentsView(View):
    """Every training run of this deployment, in log (= time) order."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[events.ModelTrained] = []

    def on_ModelTrained(self, event: events.ModelTrained) -> None:
        self.runs.append(event)

    def state(self) -> dict[str, Any]:
        return {"runs": [_dump(run) for run in self.runs]}

    def restore(self, state: dict[str, Any]) -> None:
        self.runs = [_load(run) for run in state["runs"]]


@dataclass
class StageProgress:
    version: str
    stage: str | None = None
    started_at: str | None = None
    stages_done: list[dict[str, Any]] = field(default_factory=list)


class ProgressView(View):
    """Which versions the pipeline has finished (or failed), and where the current one stands."""

    def __init__(self) -> None:
        super().__init__()
        self.finished: dict[str, str] = {}  # version -> "processed" | "failed"
        self.last_finished: str | None = None
        self.last_valid_version: str | None = None
        self.current: StageProgress | None = None

    def on_StageStarted(self, event: events.StageStarted) -> None:
        if self.current is None or self.current.version != event.version:
            self.current = StageProgress(event.version)
        self.current.stage = event.stage
        self.current.started_at = self.current.started_at or event.started_at

    def on_StageFinished(self, event: events.StageFinished) -> None:
        if self.current is not None and self.current.version == event.version:
            self.current.stages_done.append(
                {"stage": event.stage, "duration_s": event.duration_s, "summary": event.summary})

    def on_VersionProcessed(self, event: events.VersionProcessed) -> None:
        self.finished[event.version] = "processed"
        self.last_finished = "processed"
        if event.valid:
            self.last_valid_version = event.version
        self.current = None

    def on_PipelineFailed(self, event: events.PipelineFailed) -> None:
        self.finished[event.version] = "failed"
        self.last_finished = "failed"
        self.current = None

    def progress(self) -> dict[str, Any] | None:
        return asdict(self.current) if self.current else None

    def state(self) -> dict[str, Any]:
        return {"finished": self.finished, "last_finished": self.last_finished,
                "last_valid_version": self.last_valid_version, "current": self.progress()}

    def restore(self, state: dict[str, Any]) -> None:
        self.finished = dict(state["finished"])
        self.last_finished = state["last_finished"]
        self.last_valid_version = state["last_valid_version"]
        self.current = StageProgress(**state["current"]) if state["current"] else None


class PipelineViews:
    """All views of the pipeline topic, applied together."""

    def __init__(self) -> None:
        self.registry = RegistryView()
        self.catalog = CatalogView()
        self.monitoring = MonitoringView()
        self.experiments = ExperimentsView()
        self.progress = ProgressView()
        self.position = 0

    def views(self) -> dict[str, View]:
        return {"registry": self.registry, "catalog": self.catalog, "monitoring": self.monitoring,
                "experiments": self.experiments, "progress": self.progress}

    def apply(self, offset: int, payload: bytes, key: bytes | None = None) -> events.Event:
        event = events.from_bytes(payload)
        for view in self.views().values():
            view.apply(offset, event)
        self.position = offset + 1
        return event

    def state(self) -> dict[str, Any]:
        return {name: view.state() for name, view in self.views().items()}

    def restore(self, position: int, state: dict[str, Any]) -> None:
        """Take a checkpointed state back: the next record to apply is the one at `position`."""
        for name, view in self.views().items():
            view.restore(state[name])
            view.position = position
        self.position = position
