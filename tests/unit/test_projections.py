"""Checkpoints of the API's projections, as pure folds: resuming a checkpoint taken after any record
and applying the rest gives the same state as folding the whole log from offset 0."""
from __future__ import annotations

import asyncio

import orjson
import pytest

from domain import events
from projections import checkpoint
from projections.checkpoint import Checkpoint
from projections.ledger import LedgerView
from projections.views import PipelineViews


def pipeline_log() -> list[bytes]:
    """Two versions: the first trains and deploys a model, the second drifts, retrains and is kept;
    a third fails mid-way and a fourth is still running when the log ends."""
    trained = {"run_id": "r1", "metrics": {"map_at_100": 0.1}, "params": {"depth": "6"},
               "model_key": "lal/models/1.0", "features_count": 12, "data_hash": "h1", "started_at": "t"}
    log = [
        events.StageStarted(version="v1", stage="validate", started_at="t1"),
        events.ValidationFinished(version="v1", valid=True, checks_total=3, checks_passed=3, checks_failed=0,
                                  failed_checks=[], checks=[{"check": "rows", "passed": True}]),
        events.StageFinished(version="v1", stage="validate", duration_s=0.5, summary="valid=True"),
        events.CatalogPublished(version="v1", catalog_prefix="lal/catalog/v1", content_hash="c1", stats={"users": 5},
                                new_period={"transaction": ["2024-06-01", "2025-05-31"]}),
        events.ModelTrained(version="v1", model_version="1.0", deployed=True, reason="first model", **trained),
        events.ModelDeployed(version="v1", model_version="1.0", run_id="r1", trained_on="v1",
                             metrics={"map_at_100": 0.1}, model_key="lal/models/1.0", features_count=12,
                             data_hash="h1", catalog_prefix="lal/catalog/v1"),
        events.VersionProcessed(version="v1", valid=True, action_taken="retrained", data_version="v1", finished_at="t2",
                                first_model=True, decision={"reason": "first model", "drift": None}),
        events.ValidationFinished(version="v2", valid=True, checks_total=3, checks_passed=3, checks_failed=0,
                                  failed_checks=[]),
        events.CatalogPublished(version="v2", catalog_prefix="lal/catalog/v2", content_hash="c2", stats={"users": 7},
                                new_period={"transaction": ["2025-06-01", "2025-06-30"]}),
        events.DriftEvaluated(version="v2", reference_version="v1", drift_detected=True, drift_score=0.9,
                              threshold=0.2, features=[{"feature": "amount", "psi": 0.9}]),
        events.ModelTrained(version="v2", model_version="2.0", deployed=False, reason="kept",
                            **{**trained, "run_id": "r2"}),
        events.VersionProcessed(version="v2", valid=True, action_taken="retrained", data_version="v2",
                                finished_at="t3"),
        events.StageStarted(version="v3", stage="fetch", started_at="t4"),
        events.PipelineFailed(version="v3", stage="fetch", error="boom", finished_at="t5"),
        events.StageStarted(version="v4", stage="validate", started_at="t6"),
        events.StageFinished(version="v4", stage="validate", duration_s=0.1),
        events.StageStarted(version="v4", stage="catalog", started_at="t7"),
    ]
    return [event.to_bytes() for event in log]


def control_log() -> list[bytes]:
    def batch(version, table, batch_id, digest):
        return events.BatchReceived(version=version, table=table, batch_id=batch_id, total_batches=2, rows=3,
                                    content_hash=digest, chunk_offsets=[batch_id], unparseable={"age": 1},
                                    examples={"age": ["x"]}, missing_columns=["region"])
    log = [batch("v1", "people", 1, "a"), batch("v1", "people", 1, "b"), batch("v1", "offer", 2, "c"),
           events.CommitRequested(version="v1"), batch("v1", "offer", 1, "d"), batch("v2", "people", 1, "e"),
           events.CommitRequested(version="v1"), events.CommitRequested(version="v2")]
    return [event.to_bytes() for event in log]


def dump(event: events.Event | None) -> dict | None:
    return orjson.loads(event.to_bytes()) if event else None


def answers(views: PipelineViews) -> dict:
    """What the API reads from the pipeline views, as plain data."""
    return {
        "position": views.position,
        "positions": [view.position for view in views.views().values()],
        "deployed": dump(views.registry.deployed), "next_model": views.registry.next_model_version(),
        "catalog": dump(views.catalog.current), "judged_period": views.catalog.judged_period,
        "validation": dump(views.monitoring.validation), "drift": dump(views.monitoring.drift),
        "actions": views.monitoring.actions, "last_action": views.monitoring.last_action,
        "last_decision": views.monitoring.last_decision,
        "runs": [dump(run) for run in views.experiments.runs],
        "finished": views.progress.finished, "last_finished": views.progress.last_finished,
        "last_valid": views.progress.last_valid_version, "progress": views.progress.progress(),
    }


def fold(projection, log, start=0):
    for offset in range(start, len(log)):
        projection.apply(offset, log[offset])
    return projection


@pytest.mark.parametrize("cut", range(len(pipeline_log()) + 1))
def test_pipeline_views_resumed_from_a_checkpoint_equal_the_full_replay(tmp_path, cut):
    log = pipeline_log()
    stored = Checkpoint(tmp_path / "pipeline.json")
    before = fold(PipelineViews(), log[:cut])
    stored.save(before.position, before.state())

    saved = Checkpoint(tmp_path / "pipeline.json").load()
    resumed = PipelineViews()
    resumed.restore(saved.position, saved.state)
    assert saved.position == cut
    assert answers(fold(resumed, log, start=saved.position)) == answers(fold(PipelineViews(), log))


def test_a_restored_state_is_the_saved_state(tmp_path):
    views = fold(PipelineViews(), pipeline_log())
    stored = Checkpoint(tmp_path / "pipeline.json")
    stored.save(views.position, views.state())
    restored = PipelineViews()
    saved = stored.load()
    restored.restore(saved.position, saved.state)
    assert answers(restored) == answers(views)
    assert restored.progress.current.stages_done == [{"stage": "validate", "duration_s": 0.1, "summary": ""}]
    assert isinstance(restored.registry.deployed, events.ModelDeployed)


@pytest.mark.parametrize("cut", range(len(control_log()) + 1))
def test_ledger_view_resumed_from_a_checkpoint_equals_the_full_replay(tmp_path, cut):
    log = control_log()
    stored = Checkpoint(tmp_path / "ledger.json")
    before = fold(LedgerView(), log[:cut])
    stored.save(before.position, before.state())

    saved = stored.load()
    resumed = LedgerView()
    resumed.restore(saved.position, saved.state)
    resumed = fold(resumed, log, start=saved.position)
    replayed = fold(LedgerView(), log)
    assert resumed.state() == replayed.state() and resumed.position == replayed.position == len(log)
    assert resumed.committed_versions() == ["v1", "v2"]
    assert resumed.tables_received("v1") == ["offer", "people"]


def test_applying_a_record_twice_is_what_a_checkpoint_prevents():
    """The views are not idempotent by themselves (a run is appended per ModelTrained): without the
    stored offset a resumed view would count runs twice. This guards the test above from passing
    vacuously."""
    log = pipeline_log()
    views = fold(PipelineViews(), log)
    fold(views, log, start=4)
    assert len(views.experiments.runs) == 4 and views.registry.next_model_version() == "5.0"


def test_checkpoint_file_is_replaced_whole_and_unreadable_ones_are_ignored(tmp_path):
    path = tmp_path / "deep" / "ledger.json"
    stored = Checkpoint(path)
    assert stored.load() is None
    stored.save(3, {"versions": {}})
    stored.save(5, {"versions": {"v": 1}})
    assert orjson.loads(path.read_bytes()) == {"format": checkpoint.FORMAT, "position": 5, "state": {"versions": {"v": 1}}}
    assert [p.name for p in path.parent.iterdir()] == ["ledger.json"]  # no temporary file left behind

    path.with_name("ledger.json.tmp").write_bytes(b"half a chec")  # a write killed before its rename
    assert Checkpoint(path).load().position == 5

    path.write_bytes(b"{not json")
    assert Checkpoint(path).load() is None
    path.write_bytes(orjson.dumps({"format": checkpoint.FORMAT + 1, "position": 1, "state": {}}))
    assert Checkpoint(path).load() is None
    stored.discard()
    assert not path.exists()


def test_checkpoint_past_the_end_of_the_log_is_discarded(tmp_path, monkeypatch):
    """A fresh broker (after `down`) has a shorter log than the checkpoint: replay from 0."""
    from serving import runtime

    async def end_offset(config, topic):
        return ends[topic]

    monkeypatch.setattr(runtime, "end_offset", end_offset)
    log = pipeline_log()
    stored = Checkpoint(tmp_path / "pipeline.json")
    views = fold(PipelineViews(), log)
    stored.save(views.position, views.state())
    follower = type("Follower", (), {"topic": "pipeline"})()

    ends = {"pipeline": len(log)}  # the same log: resume
    resumed = PipelineViews()
    asyncio.run(runtime.Checkpointed(resumed, follower, Checkpoint(stored.path)).restore(None))
    assert resumed.position == len(log) and answers(resumed) == answers(views)

    ends = {"pipeline": 3}  # a new, shorter log: start empty and forget the checkpoint
    fresh = PipelineViews()
    asyncio.run(runtime.Checkpointed(fresh, follower, Checkpoint(stored.path)).restore(None))
    assert fresh.position == 0 and fresh.experiments.runs == [] and not stored.path.exists()


def test_a_version_processed_again_merges_into_the_catalog_and_model_before_it():
    """After a restart or a retry, a version whose catalog (or model) already reached the log must
    merge into the catalog before it, and measure drift against the model before it, not its own."""
    from domain import events
    from projections.views import PipelineViews

    views = PipelineViews()
    stream = [
        events.CatalogPublished(version="v1", catalog_prefix="c/v1", content_hash="", stats={}),
        events.ModelDeployed(version="v1", model_version="1.0", run_id="r1", trained_on="v1", metrics={},
                             model_key="m/1.0", features_count=1, data_hash="", catalog_prefix="c/v1"),
        events.CatalogPublished(version="v2", catalog_prefix="c/v2", content_hash="", stats={}),
        events.ModelDeployed(version="v2", model_version="2.0", run_id="r2", trained_on="v2", metrics={},
                             model_key="m/2.0", features_count=1, data_hash="", catalog_prefix="c/v2"),
        events.CatalogPublished(version="v2", catalog_prefix="c/v2", content_hash="", stats={}),  # a retry
    ]
    for offset, event in enumerate(stream):
        views.apply(offset, event.to_bytes())
    assert views.catalog.before("v2").version == "v1" and views.catalog.before("v3").version == "v2"
    assert views.registry.before("v2").model_version == "1.0" and views.registry.before("v3").model_version == "2.0"
    assert views.catalog.before("v1") is None and views.registry.before("v1") is None
    restored = PipelineViews()
    restored.restore(views.position, views.state())
    assert restored.state() == views.state() and restored.catalog.before("v2").version == "v1"
def test_catalog_view_keeps_the_judged_period_and_every_rejected_version():
    def published(version, period):
        return events.CatalogPublished(version=version, catalog_prefix=f"lal/catalog/{version}", content_hash="h",
                                       stats={}, new_period=period)

    def validated(version, valid):
        return events.ValidationFinished(version=version, valid=valid, checks_total=1, checks_passed=int(valid),
                                         checks_failed=int(not valid), failed_checks=[])

    views = PipelineViews()
    log = [validated("v1", True), published("v1", {"transaction": ["2024-06-01", "2025-05-31"]}),
           validated("v2", False), validated("v3", True), published("v3", {"transaction": ["2025-07-01", "2025-07-31"],
                                                                          "receipts": ["2025-07-01", "2025-07-30"]}),
           validated("v4", True), published("v4", {}),   # a re-send that brought nothing new
           validated("v5", False)]
    for offset, event in enumerate(log):
        views.apply(offset, event.to_bytes())
    assert views.catalog.current.version == "v4"
    assert views.catalog.judged_period == {"version": "v3", "transaction": ["2025-07-01", "2025-07-31"],
                                           "receipts": ["2025-07-01", "2025-07-30"]}
    assert views.catalog.rejected == ["v2", "v5"]  # their entities stay known to later versions
    # A version processed again compares with the period before it, not with its own.
    assert views.catalog.period_before("v3") == {"version": "v1", "transaction": ["2024-06-01", "2025-05-31"]}
    assert views.catalog.period_before("v6") == views.catalog.judged_period
    assert views.catalog.rejected_before("v5") == ["v2"]


def test_a_failed_version_changed_nothing_and_says_why():
    views = PipelineViews()
    views.apply(0, events.PipelineFailed(version="v7", stage="train", error="MemoryError: boom",
                                         finished_at="t").to_bytes())
    assert views.monitoring.actions == {"v7": "skipped"} and views.monitoring.last_action == "skipped"
    assert views.monitoring.last_decision["failed"] and "train" in views.monitoring.last_decision["reason"]
