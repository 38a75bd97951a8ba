"""Faults delay work and never lose it: transient failures are retried with backoff, the others end
the version at once with their cause; a stage past its time limit is stopped."""
from __future__ import annotations

import asyncio
import dataclasses

import pytest
from aiokafka.errors import KafkaConnectionError
from botocore.exceptions import ClientError, EndpointConnectionError

from adapters.errors import PeerUnavailable
from domain import events
from domain.settings import load_params, settings
from processors import failures
from processors.pipeline import Pipeline, StageFailed
from processors.stage_process import in_child, start_stage_server
from projections.views import PipelineViews


def _raised(error: BaseException, cause: BaseException | None = None) -> BaseException:
    try:
        try:
            if cause is not None:
                raise cause
        finally:
            raise error
    except BaseException as caught:  # noqa: BLE001
        return caught


def _s3_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": ""}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "GetObject")


@pytest.mark.parametrize("error, kind", [
    (ConnectionRefusedError(111, "refused"), failures.TRANSIENT),
    (EndpointConnectionError(endpoint_url="http://s3"), failures.TRANSIENT),
    (_s3_error("SlowDown", 503), failures.TRANSIENT),
    (_s3_error("InternalError", 500), failures.TRANSIENT),
    (_s3_error("NoSuchKey", 404), failures.CODE),
    (_s3_error("AccessDenied", 403), failures.CODE),
    (KafkaConnectionError("no broker"), failures.TRANSIENT),
    (failures.StageProcessDied("killed by SIGKILL"), failures.TRANSIENT),
    (PeerUnavailable("dvc push: remote unreachable"), failures.TRANSIENT),
    (failures.StageTimeout("train ran past its limit"), failures.TIMEOUT),
    (failures.DataError("no transactions"), failures.DATA),
    (ValueError("a bug"), failures.CODE),
    (KeyError("map_at_100"), failures.CODE),
])
def test_each_kind_of_failure_is_classified(error, kind):
    assert failures.classify(error) == kind


def test_the_cause_of_a_wrapping_error_counts():
    """MLflow wraps a refused connection in its own exception; an S3 upload wraps the ClientError."""
    wrapped = _raised(RuntimeError("API request failed"), ConnectionResetError("reset by peer"))
    assert failures.classify(wrapped) == failures.TRANSIENT
    explicit = RuntimeError("upload failed")
    explicit.__cause__ = _s3_error("ServiceUnavailable", 503)
    assert failures.classify(explicit) == failures.TRANSIENT


def test_polars_errors_about_the_rows_are_data():
    import polars as pl

    with pytest.raises(pl.exceptions.PolarsError) as caught:
        pl.DataFrame({"a": ["x"]}).select(pl.col("a").cast(pl.Int64, strict=True))
    assert failures.classify(caught.value) == failures.DATA


def test_retry_delays_double_up_to_the_cap_within_the_budget():
    assert list(failures.retry_delays(2, 30, 300)) == [2, 4, 8, 16, 30, 30, 30, 30, 30, 30, 30, 30, 30]
    assert sum(failures.retry_delays(2, 30, 300)) <= 300
    assert list(failures.retry_delays(5, 30, 4)) == []


# --- the pipeline consumer's handling -----------------------------------------------------------

class FakeLog:
    def __init__(self) -> None:
        self.events: list[events.Event] = []

    async def publish(self, event: events.Event) -> int:
        self.events.append(event)
        return len(self.events) - 1


def _pipeline(**pipeline_params) -> tuple[Pipeline, FakeLog]:
    params = load_params()
    params["pipeline"] = {**params["pipeline"], **pipeline_params}
    config = dataclasses.replace(settings(), params=params)
    event_log = FakeLog()
    pipeline = Pipeline(config, event_log, None, None, None, PipelineViews())  # type: ignore[arg-type]
    pipeline.prune_cache = lambda: None  # type: ignore[method-assign]
    return pipeline, event_log


SEALED = events.VersionSealed(version="v7", sequence=3, snapshot_prefix="lal/snapshots/v7", manifest={"tables": {}})
FAST = {"first_delay_s": 0.01, "max_delay_s": 0.02, "give_up_after_s": 0.1}


def _failing(pipeline: Pipeline, errors: list[BaseException]) -> list[int]:
    """Make the version's processing raise the given errors in turn, then succeed."""
    calls: list[int] = []

    async def process(sealed):
        calls.append(1)
        if errors:
            async with pipeline.stage(sealed.version, "validate"):
                raise errors.pop(0)

    pipeline._process = process  # type: ignore[method-assign]
    return calls


def test_a_transient_failure_is_retried_until_the_version_goes_through():
    pipeline, event_log = _pipeline(retry=FAST)
    calls = _failing(pipeline, [ConnectionRefusedError(111, "S3 down"), failures.StageProcessDied("killed")])
    asyncio.run(pipeline.handle(SEALED))
    assert len(calls) == 3
    assert not [e for e in event_log.events if isinstance(e, events.PipelineFailed)]


def test_a_permanent_failure_ends_the_version_at_once_with_its_cause():
    pipeline, event_log = _pipeline(retry=FAST)
    calls = _failing(pipeline, [ValueError("a bug")])
    asyncio.run(pipeline.handle(SEALED))
    failed = [e for e in event_log.events if isinstance(e, events.PipelineFailed)]
    assert len(calls) == 1
    assert [(f.stage, f.cause, f.attempts, f.error) for f in failed] == [("validate", "code", 1, "ValueError: a bug")]
    assert pipeline.views.progress.finished == {"v7": "failed"}


def test_a_peer_down_past_the_budget_fails_the_version_as_unavailable():
    pipeline, event_log = _pipeline(retry=FAST)
    calls = _failing(pipeline, [ConnectionRefusedError(111, "MLflow down")] * 50)
    asyncio.run(pipeline.handle(SEALED))
    failed = [e for e in event_log.events if isinstance(e, events.PipelineFailed)]
    assert [(f.cause, f.attempts) for f in failed] == [("unavailable", len(calls))]
    assert len(calls) == 1 + len(list(failures.retry_delays(0.01, 0.02, 0.1)))


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def test_a_stage_past_its_time_limit_is_stopped_and_fails_as_timeout():
    pipeline, event_log = _pipeline(stage_timeout_s={"train": 1})

    async def run() -> None:
        async with pipeline.stage("v7", "train"):
            await in_child(_sleep, 60)

    start_stage_server()  # as the consumer does before any version: the limit is the stage's own time
    with pytest.raises(StageFailed) as caught:
        asyncio.run(asyncio.wait_for(run(), timeout=120))  # only so that a broken limit fails instead of hanging
    assert caught.value.stage == "train" and failures.classify(caught.value.error) == failures.TIMEOUT
    assert "1 s limit" in str(caught.value)
