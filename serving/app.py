"""FastAPI routes. Thin: parse and validate, hand to ingest or read the projections, answer.

No route reads the log or S3 on the request path; every unexpected error is a 503 with its cause,
never a 500.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, ORJSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from domain import policy
from domain.settings import settings
from domain.tables import TABLE_NAMES, RecordsError
from ingest.service import BatchTooLarge, VersionClosed
from serving import events_stream
from serving.body import BodyRefused, read_body
from serving.runtime import Runtime
from serving.schemas import (
    BatchEnvelopeError,
    DataBatchRequest,
    DataBatchResponse,
    DataCommitRequest,
    DataCommitResponse,
    LookalikeBatchRequest,
    LookalikeBatchResponse,
    LookalikeRequest,
    LookalikeResponse,
    split_batch,
)

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any):
        self.status, self.detail, self.headers, self.extra = status, detail, headers, extra


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    runtime = Runtime(settings())
    app.state.runtime = runtime
    # Readiness of the HTTP server must not wait for the broker: connect in the background.
    starting = asyncio.create_task(runtime.start())
    try:
        yield
    finally:
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await starting
        if runtime.started:
            await runtime.stop()


app = FastAPI(title="Look-a-Like Service", version="1.0", default_response_class=ORJSONResponse,
              lifespan=lifespan)
STATIC = Path(__file__).parent / "static"
app.mount("/static", StaticFiles(directory=STATIC), name="static")


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    if not runtime.started:
        raise ApiError(503, "the service is still connecting to the event log")
    return runtime


def _field_errors(error: ValidationError | RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {item.get('msg')}")
    return "; ".join(parts)


@app.exception_handler(ApiError)
async def api_error(request: Request, error: ApiError):
    return ORJSONResponse({"detail": error.detail, **error.extra}, status_code=error.status, headers=error.headers)


@app.exception_handler(BodyRefused)
async def body_refused(request: Request, error: BodyRefused):
    # A sender cut off mid-body is not read any further: its connection is closed after the answer.
    return ORJSONResponse({"detail": error.detail}, status_code=error.status,
                          headers={"Connection": "close"} if error.close else None)


@app.exception_handler(RequestValidationError)
async def invalid_request(request: Request, error: RequestValidationError):
    return ORJSONResponse({"detail": _field_errors(error)}, status_code=400)


@app.exception_handler(Exception)
async def unexpected(request: Request, error: Exception):
    log.exception("unexpected error on %s", request.url.path)
    return ORJSONResponse({"detail": f"temporarily unavailable: {type(error).__name__}: {error}"},
                          status_code=503)


async def parse_body(request: Request, model):
    """Read a small JSON body within its bounds and validate it with pydantic's own (fast) JSON
    parser; errors name the field."""
    runtime: Runtime = request.app.state.runtime
    with await read_body(request, runtime.body_limits, runtime.body_memory, runtime.tmp_dir) as received:
        body = received.read()  # at most http.max_body_bytes
    if not body:
        raise ApiError(400, "request body is empty: a JSON object is required")
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        raise ApiError(400, _field_errors(error)) from None


def _body_schema(model) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


# --- health ---------------------------------------------------------------------------------

@app.get("/ready", responses={503: {"description": "Service is not ready"}})
async def ready(request: Request):
    """200 once the API can take a batch and serve: connected to the log, the broker answering, and every
    projection caught up with its topic; else 503 with what is missing."""
    problems = request.app.state.runtime.degraded()
    if problems:
        return ORJSONResponse({"status": "unavailable", "reasons": problems}, status_code=503)
    return {"status": "ok"}


@app.get("/status")
async def status(request: Request):
    runtime: Runtime = request.app.state.runtime
    loaded = runtime.serving.loaded
    progress = runtime.pipeline.progress
    return {
        "ready": loaded is not None,
        "model_version": loaded.servable.model_version if loaded else "none",
        "data_version": progress.last_valid_version or "none",
        "pipeline_status": runtime.pipeline_status() if runtime.started else "starting",
        "stage": progress.current.stage if progress.current else None,
        "stage_version": progress.current.version if progress.current else None,
        "started_at": progress.current.started_at if progress.current else None,
        "stages_done": progress.current.stages_done if progress.current else [],
        "serving_catalog_version": loaded.servable.catalog_version if loaded else None,
        "load_error": runtime.serving.load_error,
        "degraded": runtime.degraded() + runtime.notices(),
    }


# --- ingest ---------------------------------------------------------------------------------

@app.post("/data/batch", response_model=DataBatchResponse, openapi_extra=_body_schema(DataBatchRequest),
          responses={400: {"description": "Invalid request"}, 409: {"description": "Version already committed"},
                     408: {"description": "Body sent too slowly"}, 413: {"description": "Body or batch too large"},
                     415: {"description": "Body is not JSON"}})
async def data_batch(request: Request):
    runtime = runtime_of(request)
    ingest = runtime.ingest
    # The body is read before a slot is taken: a slow sender holds a connection, never a slot.
    with await read_body(request, runtime.batch_body_limits, runtime.body_memory, runtime.tmp_dir) as received:
        async with ingest.slots:  # bounds how many batches the API types at once
            try:  # off the event loop: a batch's body is megabytes, perhaps on disk
                batch, records = await asyncio.to_thread(take_apart, ingest, received)
            except BatchEnvelopeError as error:
                raise ApiError(400, str(error)) from None
            except ValidationError as error:
                raise ApiError(400, _field_errors(error)) from None
            except BatchTooLarge as error:
                raise ApiError(413, str(error)) from None
            if batch.table not in TABLE_NAMES:
                raise ApiError(400, f"table: unknown table {batch.table!r}; expected one of {', '.join(TABLE_NAMES)}")
            for field in ("total_batches", "batch_id"):
                if getattr(batch, field) > ingest.max_batches:
                    raise ApiError(400, f"{field}: at most {ingest.max_batches:,} batches per table in one version")
            if batch.batch_id > batch.total_batches:
                raise ApiError(400, f"batch_id: {batch.batch_id} is greater than total_batches {batch.total_batches}")
            if not records:
                return DataBatchResponse(status="accepted", version=batch.version, table=batch.table,
                                         batch_id=batch.batch_id, rows=0, outcome="empty_noop")
            try:
                prepared = await ingest.prepare(batch.version, batch.table, records)
            except RecordsError as error:
                raise ApiError(400, str(error)) from None
            except BatchTooLarge as error:
                raise ApiError(413, str(error)) from None
            except VersionClosed:
                raise _closed(batch.version) from None
            del records
    try:
        accepted = await ingest.submit_batch(batch.version, batch.table, batch.batch_id, batch.total_batches,
                                             prepared)
    except VersionClosed:
        raise _closed(batch.version) from None
    return DataBatchResponse(status="accepted", version=batch.version, table=batch.table,
                             batch_id=batch.batch_id, rows=accepted.rows, outcome=accepted.outcome)


def take_apart(ingest, received) -> tuple[DataBatchRequest, list]:
    """A batch's body, read, bounded and split into its envelope and its records (in a thread)."""
    body = received.read()
    ingest.check_records(body)
    return split_batch(body)


def _closed(version: str) -> ApiError:
    return ApiError(409, f"version {version!r} is already committed and closed; send new data as a new version")


@app.post("/data/commit", response_model=DataCommitResponse, openapi_extra=_body_schema(DataCommitRequest),
          responses={400: {"description": "Invalid request"}})
async def data_commit(request: Request):
    commit = await parse_body(request, DataCommitRequest)
    accepted = await runtime_of(request).ingest.commit(commit.version)
    return DataCommitResponse(status="accepted" if accepted.first_commit else "already_committed",
                              version=accepted.version, tables_received=accepted.tables_received)


# --- inference ------------------------------------------------------------------------------

async def _lookalike(runtime: Runtime, query: LookalikeRequest) -> LookalikeResponse:
    loaded = runtime.serving.loaded
    if loaded is None:
        raise ApiError(503, "no model is deployed yet: send and commit a first data version")
    scorer = loaded.scorer
    if scorer.offer(query.offer_id, query.merchant_id) is None:
        if not scorer.merchant_known(query.merchant_id):
            raise ApiError(404, f"merchant {query.merchant_id} is not in the catalog")
        raise ApiError(404, f"offer {query.offer_id} of merchant {query.merchant_id} is not in the catalog")
    audience = await asyncio.to_thread(scorer.audience, query.offer_id, query.merchant_id, query.top_n)
    reasons = [{"feature": name, "impact": float(impact)} for name, impact in audience.reasons]
    if not reasons:  # the contract asks for at least one; say plainly that nobody was rankable
        reasons = [{"feature": "no_candidates", "impact": 0.0}]
    return LookalikeResponse(
        merchant_id=query.merchant_id, offer_id=query.offer_id,
        audience=[{"user_id": int(user), "score": float(score)} for user, score in audience.users],
        audience_size=len(audience.users), model_version=loaded.servable.model_version, reasons=reasons,
        candidates=int(audience.candidates), data_version=loaded.servable.catalog_version,
    )


@app.post("/lookalike", response_model=LookalikeResponse, openapi_extra=_body_schema(LookalikeRequest),
          responses={400: {"description": "Invalid request"}, 404: {"description": "Merchant or offer not found"},
                     503: {"description": "Model is not ready"}})
async def lookalike(request: Request):
    query = await parse_body(request, LookalikeRequest)
    return await _lookalike(runtime_of(request), query)


@app.post("/lookalike/batch", response_model=LookalikeBatchResponse,
          openapi_extra=_body_schema(LookalikeBatchRequest),
          responses={400: {"description": "Invalid request"}, 404: {"description": "Merchant or offer not found"},
                     503: {"description": "Model is not ready"}})
async def lookalike_batch(request: Request):
    batch = await parse_body(request, LookalikeBatchRequest)
    runtime = runtime_of(request)
    results = []
    for index, query in enumerate(batch.requests):
        try:
            results.append(await _lookalike(runtime, query))
        except ApiError as error:
            raise ApiError(error.status, f"requests[{index}]: {error.detail}") from None
    return LookalikeBatchResponse(results=results)


# --- model and monitoring -------------------------------------------------------------------

@app.get("/model/info")
async def model_info(request: Request):
    runtime: Runtime = request.app.state.runtime
    deployed = runtime.pipeline.registry.deployed
    if deployed is None:
        return {"model_name": runtime.config.params["model"]["name"], "model_version": "none",
                "trained_on": "none", "features_count": 0, "train_metrics": {}, "status": "no model yet"}
    return {
        "model_name": runtime.config.params["model"]["name"],
        "model_version": deployed.model_version,
        "trained_on": deployed.trained_on,
        "features_count": deployed.features_count,
        "train_metrics": deployed.metrics,
        "mlflow_run_id": deployed.run_id,
        "data_hash": deployed.data_hash,
        "model_uri": runtime.store.uri(deployed.model_key),
        "serving_catalog_version": runtime.serving.loaded.servable.catalog_version if runtime.serving.loaded else None,
    }


@app.get("/monitoring/drift")
async def monitoring_drift(request: Request):
    """The decision on the last finished version: its drift check (if it had one: a first model and an
    invalid version have none), the action taken, the rule and every input it used."""
    runtime: Runtime = request.app.state.runtime
    monitoring = runtime.pipeline.monitoring
    decision = monitoring.last_decision or {}
    drift = monitoring.drift
    evaluated = drift is not None and drift.version == decision.get("version")
    threshold = drift.threshold if drift else float(runtime.config.params["drift"]["threshold"])
    return {
        "drift_detected": bool(drift.drift_detected) if evaluated else False,
        "drift_score": float(drift.drift_score) if evaluated else 0.0,
        "action_taken": monitoring.last_action or policy.Action.NONE.value,
        "version": decision.get("version"),
        "first_model": bool(decision.get("first_model", False)),
        "drift_evaluated": evaluated,
        "threshold": threshold,
        "rule": policy.DRIFT_RULE,
        "scores": drift.scores if evaluated else {},
        "references": drift.references if evaluated else {},
        "judged": drift.judged if evaluated else {},
        "decision": decision,
        "features": drift.features if evaluated else [],
        "last_drift_check": ({"version": drift.version, "drift_detected": drift.drift_detected,
                              "drift_score": drift.drift_score} if drift else None),
        "actions": monitoring.actions,
    }


@app.get("/monitoring/data-quality")
async def data_quality(request: Request):
    validation = request.app.state.runtime.pipeline.monitoring.validation
    if validation is None:
        return {"version": "none", "valid": False, "checks_total": 0, "checks_passed": 0, "checks_failed": 0,
                "failed_checks": [], "status": "no version validated yet"}
    return {
        "version": validation.version, "valid": validation.valid, "checks_total": validation.checks_total,
        "checks_passed": validation.checks_passed, "checks_failed": validation.checks_failed,
        "failed_checks": validation.failed_checks, "checks": validation.checks,
    }


@app.get("/experiments")
async def experiments(request: Request):
    runs = request.app.state.runtime.pipeline.experiments.runs
    return {"experiments": [
        {"run_id": run.run_id, "data_version": run.version, "model_version": run.model_version,
         "metrics": run.metrics, "params": run.params, "timestamp": run.started_at, "deployed": run.deployed,
         "decision": run.reason}
        for run in runs
    ]}


# --- operations -----------------------------------------------------------------------------

@app.get("/events", responses={200: {"content": {"text/event-stream": {}}}, 400: {"description": "Invalid query"},
                                503: {"description": "Too many subscribers"}})
async def event_stream(request: Request, topics: str = "control,versions,pipeline", since: int | None = None):
    """Tail the log as Server-Sent Events. `since`: replay from that offset of each topic (else live)."""
    chosen = [name.strip() for name in topics.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in events_stream.STREAMED]
    if not chosen or unknown:
        raise ApiError(400, f"topics: unknown {unknown or chosen}; choose from {', '.join(events_stream.STREAMED)}")
    if since is not None and since < 0:
        raise ApiError(400, "since: must be an offset >= 0")
    runtime = runtime_of(request)
    if not runtime.subscribers.enter():
        raise ApiError(503, f"/events already has {runtime.subscribers.limit} subscribers (the most it serves at "
                            "once, each with its own broker consumer); try again later",
                       headers={"Retry-After": "10"})
    try:
        return events_stream.EventStreamResponse(runtime.config, chosen, since,
                                                 heartbeat_s=float(runtime.config.params["events"]["heartbeat_s"]),
                                                 on_close=runtime.subscribers.leave)
    except BaseException:
        runtime.subscribers.leave()
        raise


@app.get("/dashboard", include_in_schema=False)
async def dashboard():
    """A page that tails /events: the current version's stages, per-version quality and drift, models."""
    return FileResponse(STATIC / "dashboard.html")
