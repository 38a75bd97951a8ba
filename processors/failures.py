"""Why a pipeline stage failed, and whether trying the version again can help.

    transient    a peer (broker, S3, MLflow, the DVC remote) was unreachable or answered "try later", or
                 a stage process was killed: the pipeline waits and tries the version again
    timeout      a stage ran past its limit (params pipeline.stage_timeout_s): the same input would
                 take as long again
    data         the version's rows broke a stage although they passed validation
    code         anything else: a bug, which the same input meets again
    unavailable  transient for longer than the retry budget (params pipeline.retry.give_up_after_s)

A version that fails records its cause on the log (PipelineFailed.cause), so whoever sent it knows
whether to fix the data, report a bug, or send it again once the service's parts are back.
"""
from __future__ import annotations

from collections.abc import Iterator

from adapters.errors import PeerUnavailable

TRANSIENT, TIMEOUT, DATA, CODE, UNAVAILABLE = "transient", "timeout", "data", "code", "unavailable"

# Answers of S3 (and MLflow's own REST errors) that say "not now" rather than "not this".
_RETRY_LATER_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "RequestTimeTooSkewed",
                      "503", "500", "502", "504", "TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR"}


class StageProcessDied(Exception):
    """A stage's process ended without an answer: killed by the kernel (memory) or by someone."""


class StageTimeout(Exception):
    """A stage ran past its limit; its process was stopped."""


class DataError(ValueError):
    """The version's data cannot be processed although it passed validation."""


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and what caused it (explicitly or while it was being handled), outermost first."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _is_transient(error: BaseException) -> bool:
    from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
    from botocore.exceptions import ClientError, ConnectionClosedError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(error, (StageProcessDied, PeerUnavailable, ConnectionError, KafkaConnectionError,
                          KafkaTimeoutError, BotoConnectionError, ConnectionClosedError, HTTPClientError)):
        return True
    if isinstance(error, TimeoutError) and not isinstance(error, StageTimeout):
        return True  # a socket or client timeout towards a peer
    if isinstance(error, KafkaError):
        return bool(getattr(error, "retriable", False))
    if isinstance(error, ClientError):
        answer = error.response.get("Error", {})
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status >= 500 or answer.get("Code") in _RETRY_LATER_CODES
    module = type(error).__module__
    if module.startswith(("requests.", "urllib3.")):  # MLflow's HTTP client: connection refused, timeouts
        return type(error).__name__ in {"ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout",
                                        "MaxRetryError", "NewConnectionError", "ProtocolError", "RetryError"}
    if type(error).__name__ in {"MlflowException", "RestException"}:
        return getattr(error, "error_code", "") in _RETRY_LATER_CODES
    return False


def _is_data(error: BaseException) -> bool:
    if isinstance(error, DataError):
        return True
    # The data libraries' complaints about the rows they were given (not about how they were called).
    from catboost import CatBoostError
    from polars.exceptions import (ColumnNotFoundError, ComputeError, InvalidOperationError, NoDataError, SchemaError,
                                   ShapeError)
    from pyarrow import ArrowInvalid, ArrowTypeError

    return isinstance(error, (ComputeError, SchemaError, ShapeError, ColumnNotFoundError, NoDataError,
                              InvalidOperationError, ArrowInvalid, ArrowTypeError, CatBoostError))


def classify(error: BaseException) -> str:
    """transient, timeout, data or code: the first link of the error's chain that tells."""
    for link in _chain(error):
        if isinstance(link, StageTimeout):
            return TIMEOUT
        if _is_transient(link):
            return TRANSIENT
        if _is_data(link):
            return DATA
    return CODE


def retry_delays(first_s: float, max_s: float, budget_s: float) -> Iterator[float]:
    """Waits between attempts: doubling from first_s up to max_s, until they would pass budget_s."""
    delay, waited = first_s, 0.0
    while waited + delay <= budget_s:
        yield delay
        waited += delay
        delay = min(delay * 2, max_s)
