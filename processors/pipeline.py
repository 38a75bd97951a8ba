"""The pipeline consumer: takes sealed versions one at a time, in commit order, and decides.

    validate (the version's new part) ──invalid──► skipped (nothing changes; the snapshot is marked rejected)
        │valid
    catalog (merge into the catalog, build the serving bundle: new offers become servable)
        │
    drift (the new part against the known worlds: the previous valid period, what the first and
        │  the deployed model learnt from; none before the first model)
        │first model, or drift
    train, and score the deployed model on the same hold-out offers ─► deploy unless worse beyond noise

What to do is domain/policy.py's rule (`decide`, `drift_verdict`, `deploy_decision`); this module
gathers its inputs, runs the stages, and puts the rule and every input on the log.

Every stage's start, end and outcome is an event on the pipeline topic. A stage that fails for a
passing reason (a peer unreachable, its process killed) makes the consumer try the version again
later; any other failure ends the version with PipelineFailed and its cause (processors/failures.py);
the deployed model keeps serving. Each stage has a time limit. On start the consumer folds the
pipeline topic, so after a restart it skips every version it already finished.
Run: `python -m bootstrap pipeline`.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

from adapters.broker import EventLog
from adapters.lineage import Lineage
from adapters.storage import ObjectStore, prune_local_copies
from adapters.tracking import Tracker
from domain import events, layout, policy
from domain.settings import Settings
from processors import failures
from processors.stage_process import in_child
from projections.views import PipelineViews

log = logging.getLogger(__name__)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class StageFailed(Exception):
    def __init__(self, stage: str, error: BaseException):
        super().__init__(f"{stage}: {error}")
        self.stage = stage
        self.error = error


class Pipeline:
    def __init__(self, config: Settings, event_log: EventLog, store: ObjectStore, tracker: Tracker,
                 lineage: Lineage, views: PipelineViews):
        self.config = config
        self.log = event_log
        self.store = store
        self.tracker = tracker
        self.lineage = lineage
        self.views = views
        self.params = config.params
        self.layout = config.layout
        self.cache = self.layout.pipeline_cache()
        self.timeouts = {stage: float(limit) for stage, limit in self.params["pipeline"]["stage_timeout_s"].items()}
        self.retry = self.params["pipeline"]["retry"]

    # --- plumbing -------------------------------------------------------------------------

    async def publish(self, event: events.Event) -> None:
        offset = await self.log.publish(event)
        self.views.apply(offset, event.to_bytes())

    @contextlib.asynccontextmanager
    async def stage(self, version: str, name: str):
        await self.publish(events.StageStarted(version=version, stage=name, started_at=now()))
        started = time.monotonic()
        summary: dict[str, str] = {}
        deadline = asyncio.timeout(self.timeouts.get(name))
        try:
            async with deadline:
                yield summary
        except Exception as error:
            if deadline.expired():
                raise StageFailed(name, failures.StageTimeout(
                    f"{name} ran past its {self.timeouts[name]:.0f} s limit")) from error
            raise StageFailed(name, error) from error
        await self.publish(events.StageFinished(version=version, stage=name,
                                                duration_s=round(time.monotonic() - started, 3),
                                                summary=summary.get("text", "")))

    def local_dir(self, kind: str, name: str) -> Path:
        return self.cache / kind / name

    def fetch_dir(self, prefix: str, kind: str, name: str) -> Path:
        return self.store.get_dir(prefix, self.local_dir(kind, name))

    # --- the version ----------------------------------------------------------------------

    async def handle(self, sealed: events.VersionSealed) -> None:
        """Process one version. A transient failure (failures.classify) is retried from the version's
        start, as after a restart (what reached the log is not redone: a recorded training is resumed),
        waiting longer each time, within params pipeline.retry; any other failure, or a transient one
        past that budget ("unavailable"), ends the version with PipelineFailed and its cause."""
        version = sealed.version
        if version in self.views.progress.finished:
            log.info("version %s already processed; skipping", version)
            return
        try:
            await self._attempt(sealed)
        finally:
            await asyncio.to_thread(self.prune_cache)

    async def _attempt(self, sealed: events.VersionSealed) -> None:
        version = sealed.version
        delays = failures.retry_delays(float(self.retry["first_delay_s"]), float(self.retry["max_delay_s"]),
                                       float(self.retry["give_up_after_s"]))
        attempt = 1
        while True:
            try:
                await self._process(sealed)
                return
            except Exception as error:  # one version's failure never stops the consumer
                stage, cause = (error.stage, error.error) if isinstance(error, StageFailed) else ("pipeline", error)
                kind = failures.classify(cause)
                delay = next(delays, None) if kind == failures.TRANSIENT else None
                if delay is not None:
                    log.warning("version %s, attempt %d: %s failed for a passing reason (%s: %s); trying again "
                                "in %.0f s", version, attempt, stage, type(cause).__name__, cause, delay)
                    await asyncio.sleep(delay)
                    attempt += 1
                    continue
                kind = failures.UNAVAILABLE if kind == failures.TRANSIENT else kind
                log.error("version %s failed in %s (%s, attempt %d): %s", version, stage, kind, attempt,
                          "".join(traceback.format_exception(cause)))
                await self.publish_outcome(events.PipelineFailed(
                    version=version, stage=stage, error=f"{type(cause).__name__}: {cause}", finished_at=now(),
                    cause=kind, attempts=attempt))
                return

    def prune_cache(self) -> None:
        """Between versions, keep the local copies the next one needs (the current catalog, the deployed
        model and the catalog it learnt from) and the last training's lineage; the rest is in S3."""
        catalog, deployed = self.views.catalog.current, self.views.registry.deployed
        keep = {"snapshots": set(), "reports": set(),
                "catalog": {event.version for event in (catalog,) if event} | {d.trained_on for d in (deployed,) if d},
                "models": {d.model_version for d in (deployed,) if d}}
        for kind, names in keep.items():
            prune_local_copies(self.cache / kind, names)
        try:
            self.lineage.prune()
        except Exception:  # a full lineage workspace costs disk, not correctness: try after the next version
            log.exception("could not prune the lineage workspace")

    async def publish_outcome(self, event: events.Event) -> None:
        """A version's outcome must reach the log, or the version would be processed again after a
        restart: while the broker is unreachable (nothing else can progress either), keep trying."""
        delay = float(self.retry["first_delay_s"])
        while True:
            try:
                await self.publish(event)
                return
            except Exception as error:
                if failures.classify(error) != failures.TRANSIENT:
                    raise
                log.warning("could not record %s for %s (%s); trying again in %.0f s",
                            type(event).__name__, event.version, error, delay)  # type: ignore[attr-defined]
                await asyncio.sleep(delay)
                delay = min(delay * 2, float(self.retry["max_delay_s"]))

    async def _process(self, sealed: events.VersionSealed) -> None:
        """The version's stages in order, each deciding what the next one gets (domain/policy.py)."""
        version = sealed.version
        snapshot = await self.fetch(sealed)
        previous = self.views.catalog.before(version)
        reference = self.fetch_dir(previous.catalog_prefix, "catalog", previous.version) if previous else None
        deployed = self.views.registry.before(version)
        result = await self.validate(sealed, snapshot, reference)
        if not result.valid:
            # Rejected data stays stored for inspection, marked as such.
            self.store.put_bytes(f"{sealed.snapshot_prefix}/{layout.REJECTED}",
                                 json.dumps({"failed_checks": result.failed_checks}).encode())
            await self.finish(version, valid=False, decision=policy.decide(False, deployed is not None, None))
            return
        catalog_dir, catalog_prefix = await self.build_catalog(version, snapshot, reference, result)
        verdict = await self.drift(version, snapshot, reference, deployed) if deployed is not None else None
        decision = policy.decide(True, deployed is not None, verdict)
        if not decision.train:
            await self.finish(version, valid=True, decision=decision, verdict=verdict)
            return
        earlier = next((run for run in self.views.experiments.runs if run.version == version), None)
        if earlier is None:
            comparison = await self.train_and_deploy(version, catalog_dir, catalog_prefix)
        else:
            # A previous attempt was stopped after training (kill, restart): the run is on the log.
            comparison = await self.resume_deploy(earlier, catalog_prefix)
        await self.finish(version, valid=True, decision=decision, verdict=verdict, comparison=comparison)

    async def fetch(self, sealed: events.VersionSealed) -> Path:
        """The version's snapshot, local."""
        async with self.stage(sealed.version, "fetch") as summary:
            if "seal_error" in sealed.manifest:
                raise RuntimeError(f"the version could not be sealed: {sealed.manifest['seal_error']}")
            snapshot = self.fetch_dir(sealed.snapshot_prefix, "snapshots", sealed.version)
            summary["text"] = f"{sum(t['rows'] for t in sealed.manifest['tables'].values())} rows"
        return snapshot

    async def validate(self, sealed: events.VersionSealed, snapshot: Path, reference: Path | None):
        """quality.validation on the version's new part; the report stored, the result on the log."""
        from quality import validation

        version = sealed.version
        async with self.stage(version, "validate") as summary:
            rejected = [self.fetch_dir(self.layout.snapshot(name), "snapshots", name)
                        for name in self.views.catalog.rejected_before(version)]
            result = await in_child(validation.validate, snapshot, sealed.manifest, reference,
                                    self.params["validation"], None, rejected)
            report = validation.write_report(result, self.local_dir("reports", version))
            report_key = self.layout.report(version, report.name)
            self.store.put_file(report_key, report)
            await self.publish(events.ValidationFinished(
                version=version, valid=result.valid, checks_total=result.checks_total,
                checks_passed=result.checks_passed, checks_failed=result.checks_failed,
                failed_checks=result.failed_checks, checks=[c.__dict__ for c in result.checks],
                report_key=report_key, judged=result.judged))
            summary["text"] = f"valid={result.valid} failed={result.checks_failed}/{result.checks_total}"
        return result

    async def build_catalog(self, version: str, snapshot: Path, reference: Path | None, result) -> tuple[Path, str]:
        """Merge the version into the catalog and build its serving bundle (new offers become servable);
        stored, tracked by DVC, and on the log. Returns the local catalog and its key."""
        from ml import catalog as ml_catalog
        from ml import serving as ml_serving

        async with self.stage(version, "catalog") as summary:
            catalog_dir = self.local_dir("catalog", version)
            shutil.rmtree(catalog_dir, ignore_errors=True)
            stats = await in_child(ml_catalog.merge, reference, snapshot, catalog_dir)
            await in_child(ml_serving.build_bundle, catalog_dir, catalog_dir / layout.BUNDLE_DIR)
            catalog_prefix = self.layout.catalog(version)
            self.store.put_dir(catalog_prefix, catalog_dir)
            (catalog_dir / layout.COMPLETE).touch()
            # DVC tracks the snapshot and the merged catalog and pushes both to the S3 remote.
            await asyncio.to_thread(self.lineage.track, "snapshots", version, snapshot)
            content_hash = await asyncio.to_thread(self.lineage.track, "catalog", version, catalog_dir)
            await self.publish(events.CatalogPublished(
                version=version, catalog_prefix=catalog_prefix, content_hash=content_hash,
                stats={k: int(v) for k, v in stats.items()},
                new_period={table: list(part["new_period"]) for table, part in result.judged.items()
                            if part.get("new_period")}))
            summary["text"] = ", ".join(f"{k}={v}" for k, v in stats.items())
        return catalog_dir, catalog_prefix

    async def drift(self, version: str, snapshot: Path, reference: Path | None,
                    deployed: events.ModelDeployed) -> policy.DriftVerdict:
        """The new part against every known world (the previous valid period, the first model's data,
        the deployed model's data); the reports stored, the verdict and its inputs on the log."""
        from quality import drift as quality_drift

        # The most recently judged valid period, as it stands before this version.
        previous_period = self.views.catalog.period_before(version)
        async with self.stage(version, "drift") as summary:
            first = self.views.registry.first or deployed
            initial = self.fetch_dir(first.catalog_prefix, "catalog", first.trained_on)
            trained_on = (self.fetch_dir(deployed.catalog_prefix, "catalog", deployed.trained_on)
                          if deployed.trained_on != first.trained_on else None)
            drift = await in_child(
                quality_drift.evaluate_drift, initial, snapshot, self.params["drift"],
                self.local_dir("reports", version), reference, previous_period, trained_on)
            verdict = policy.drift_verdict(drift.scores, float(self.params["drift"]["threshold"]))
            report_keys = []
            for path in drift.report_files:
                report_keys.append(self.layout.report(version, path.name))
                self.store.put_file(report_keys[-1], path)
            await self.publish(events.DriftEvaluated(
                version=version, reference_version=deployed.trained_on,
                drift_detected=verdict.detected, drift_score=verdict.score, threshold=verdict.threshold,
                features=drift.features, report_keys=report_keys, scores=verdict.scores,
                references={policy.PREVIOUS: (previous_period or {}).get("version"),
                            policy.INITIAL: first.trained_on, policy.DEPLOYED: deployed.trained_on},
                judged=drift.judged, rule=verdict.rule))
            summary["text"] = (f"score={verdict.score:.3f} detected={verdict.detected} "
                               + " ".join(f"{k}={v:.3f}" for k, v in verdict.scores.items()))
        return verdict

    async def resume_deploy(self, trained: events.ModelTrained, catalog_prefix: str) -> dict[str, Any]:
        """Finish a version whose model was trained and recorded before a restart: deploy it if the
        recorded decision was to deploy and that never reached the log. Nothing is trained twice."""
        async with self.stage(trained.version, "deploy") as summary:
            deployed = self.views.registry.deployed
            if trained.deployed and (deployed is None or deployed.model_version != trained.model_version):
                await self.publish(events.ModelDeployed(
                    version=trained.version, model_version=trained.model_version, run_id=trained.run_id,
                    trained_on=trained.version, metrics=trained.metrics, model_key=trained.model_key,
                    features_count=trained.features_count, data_hash=trained.data_hash,
                    catalog_prefix=catalog_prefix))
            summary["text"] = (f"resumed after a restart: model {trained.model_version} already trained "
                               f"({trained.reason})")
        return trained.comparison

    async def train_and_deploy(self, version: str, catalog_dir: Path, catalog_prefix: str) -> dict[str, Any]:
        """Train on the catalog; deploy unless worse than the deployed model beyond the hold-out's noise.
        Returns the deploy decision (domain.policy.DeployDecision as a dict)."""
        from ml import train as ml_train

        model_params = self.params["model"]
        seed = int(self.params["seed"])
        model_version = self.views.registry.next_model_version()
        started_at = now()
        deployed = self.views.registry.deployed
        async with self.stage(version, "train") as summary:
            model_dir = self.local_dir("models", model_version)
            shutil.rmtree(model_dir, ignore_errors=True)
            # The deployed model is scored on the new model's hold-out in the same process.
            baseline = (layout.model_file(self.fetch_dir(deployed.model_key, "models", deployed.model_version))
                        if deployed is not None else None)
            trained = await in_child(ml_train.train, catalog_dir, model_dir, model_params, seed, baseline)
            summary["text"] = f"map@100={trained.metrics.get('map_at_100', float('nan')):.4f}"

        async with self.stage(version, "deploy") as summary:
            comparison = policy.deploy_decision(
                trained.holdout_ap, trained.baseline_holdout_ap, self.params["deploy"], seed)
            deploy, reason = comparison.deploy, comparison.reason
            recorded = await asyncio.to_thread(self.lineage.record_training, version, model_version,
                                               trained.model_path.parent)
            data_hash = recorded["data_md5"]  # dvc.lock's md5 of the catalog this model learnt from
            (trained.model_path.parent / "dvc.lock").write_text(recorded["dvc_lock"])
            model_key = self.layout.model(model_version)
            self.store.put_dir(model_key, trained.model_path.parent)
            run_id = await asyncio.to_thread(
                self.tracker.log_training, data_version=version, model_version=model_version,
                params={k: str(v) for k, v in trained.params.items()}, metrics=trained.metrics,
                tags={"data_hash": data_hash, "deployed": str(deploy), "decision": reason,
                      "deployment": self.config.deployment},
                artifacts=[trained.model_path.parent])
            await self.publish(events.ModelTrained(
                version=version, model_version=model_version, run_id=run_id, metrics=trained.metrics,
                params={k: str(v) for k, v in trained.params.items()}, model_key=model_key,
                features_count=trained.features_count, data_hash=data_hash, deployed=deploy,
                reason=reason, started_at=started_at, comparison=comparison.to_dict()))
            if deploy:
                await self.publish(events.ModelDeployed(
                    version=version, model_version=model_version, run_id=run_id, trained_on=version,
                    metrics=trained.metrics, model_key=model_key, features_count=trained.features_count,
                    data_hash=data_hash, catalog_prefix=catalog_prefix))
            summary["text"] = reason
        return comparison.to_dict()

    async def finish(self, version: str, valid: bool, decision: policy.Decision,
                     verdict: policy.DriftVerdict | None = None, comparison: dict[str, Any] | None = None) -> None:
        """The version's outcome, with the rule and every input it used."""
        await self.publish(events.VersionProcessed(
            version=version, valid=valid, action_taken=decision.action.value,
            data_version=version if valid else self.views.progress.last_valid_version, finished_at=now(),
            first_model=decision.first_model,
            decision={"reason": decision.reason, "trained": decision.train,
                      "drift": verdict.to_dict() if verdict is not None else None, "deploy": comparison}))
