"""Sealing without a broker: what is retried, what fails the version, and how a failed seal reopens it."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError
from botocore.exceptions import EndpointConnectionError

from adapters.broker import RecordsGone
from domain import events, ledger
from domain.ledger import Outcome
from processors import sealer


def batch(batch_id=1, digest="a", version="v1"):
    return events.BatchReceived(version=version, table="merchant", batch_id=batch_id, total_batches=2, rows=3,
                                content_hash=digest, chunk_offsets=[batch_id])


def fold(items):
    state, outcomes = None, []
    for offset, event in enumerate(items):
        state, outcome = ledger.apply(state, offset, event)
        outcomes.append(outcome)
    return state, outcomes


def test_a_failed_seal_reopens_the_version_empty():
    state, outcomes = fold([batch(1), batch(2), events.CommitRequested(version="v1"),
                            events.SealFailed(version="v1", commit_offset=2, reason="RecordsGone: ..."),
                            batch(1), events.CommitRequested(version="v1")])
    assert outcomes == [Outcome.ACCEPTED, Outcome.ACCEPTED, Outcome.COMMITTED, Outcome.REOPENED,
                        Outcome.ACCEPTED, Outcome.COMMITTED]
    # The re-sent batch is accepted, not a duplicate of the unreadable one; the new commit seals again.
    assert list(state.batches) == ["merchant/1"] and state.commit_offset == 5
    assert state.seal_failures == 1 and state.seal_error == "RecordsGone: ..."


def test_a_seal_failure_of_an_earlier_commit_changes_nothing():
    state, outcomes = fold([batch(1), events.CommitRequested(version="v1"),
                            events.SealFailed(version="v1", commit_offset=0, reason="not this commit")])
    assert outcomes[-1] is Outcome.STALE and state.committed and state.seal_failures == 0


def test_the_api_names_versions_to_send_again():
    from projections.ledger import LedgerView

    view = LedgerView()
    for offset, event in enumerate([batch(1), events.CommitRequested(version="v1"),
                                    events.SealFailed(version="v1", commit_offset=1, reason="gone")]):
        view.apply(offset, event.to_bytes())
    assert view.seal_failures() == {"v1": "gone"} and not view.is_committed("v1")
    view.apply(3, events.CommitRequested(version="v1").to_bytes())
    assert view.seal_failures() == {}


def test_until_done_retries_passing_failures_with_growing_waits():
    waits: list[float] = []
    failures = [KafkaConnectionError("broker down"), EndpointConnectionError(endpoint_url="http://s3"),
                TimeoutError("slow"), OSError(28, "No space left on device")]

    async def attempt():
        if failures:
            raise failures.pop(0)
        return "sealed"

    async def sleep(seconds):
        waits.append(seconds)

    assert asyncio.run(sealer.until_done(attempt, "sealing v1", sleep=sleep, max_delay_s=4)) == "sealed"
    assert waits == [1, 2, 4, 4]


def test_until_done_raises_what_retrying_cannot_fix_at_once():
    async def attempt():
        raise ValueError("a defect")

    async def sleep(seconds):
        raise AssertionError("no wait for a failure that does not pass")

    with pytest.raises(ValueError):
        asyncio.run(sealer.until_done(attempt, "sealing v1", sleep=sleep))


@pytest.fixture
def version_on_log(monkeypatch):
    """v1: two batches and a commit at offset 2, as the sealer reads them back."""
    log = [batch(1), batch(2), events.CommitRequested(version="v1"), events.CommitRequested(version="v1")]

    async def read_range(settings, topic, first=None, last=None, idle_timeout_s=30.0):
        for offset in range(first, last + 1):
            yield offset, b"v1", log[offset].to_bytes()

    async def nothing_sealed(settings, version, sequence):
        return False

    monkeypatch.setattr(sealer, "read_range", read_range)
    monkeypatch.setattr(sealer, "already_sealed", nothing_sealed)
    return log


def seal_commit(commit: int = 2):
    return asyncio.run(sealer.seal_commit(None, None, "v1", 0, commit))


def test_the_first_commit_seals_what_the_log_holds(version_on_log, monkeypatch):
    sealed_ledgers = []

    async def seal(settings, store, version_ledger):
        sealed_ledgers.append(version_ledger)
        return events.VersionSealed(version="v1", sequence=version_ledger.commit_offset, snapshot_prefix="p",
                                    manifest=ledger.manifest(version_ledger, ("merchant",)))

    monkeypatch.setattr(sealer, "seal", seal)
    outcome = seal_commit()
    assert isinstance(outcome, events.VersionSealed) and outcome.sequence == 2
    assert sorted(sealed_ledgers[0].batches) == ["merchant/1", "merchant/2"]
    assert seal_commit(3) is None  # a repeated commit seals nothing


def test_a_commit_already_sealed_before_a_restart_is_not_sealed_again(version_on_log, monkeypatch):
    async def sealed(settings, version, sequence):
        return sequence == 2

    async def seal(*args):
        raise AssertionError("sealed twice")

    monkeypatch.setattr(sealer, "already_sealed", sealed)
    monkeypatch.setattr(sealer, "seal", seal)
    assert seal_commit() is None


@pytest.mark.parametrize("failure", [KafkaConnectionError("broker down"), EndpointConnectionError(endpoint_url="x"),
                                     TimeoutError("nothing read")])
def test_a_passing_failure_is_raised_for_a_retry_not_turned_into_a_verdict(version_on_log, monkeypatch, failure):
    async def seal(*args):
        raise failure

    monkeypatch.setattr(sealer, "seal", seal)
    with pytest.raises(type(failure)):
        seal_commit()


@pytest.mark.parametrize("failure", [RecordsGone("ingest.data: offsets 5..9 wanted, the topic holds 20..30"),
                                     ValueError("Invalid IPC stream")])
def test_data_that_cannot_be_read_back_fails_the_version_saying_why(version_on_log, monkeypatch, failure):
    async def seal(*args):
        raise failure

    monkeypatch.setattr(sealer, "seal", seal)
    outcome = seal_commit()
    assert isinstance(outcome, events.SealFailed) and outcome.commit_offset == 2
    assert outcome.reason.startswith(type(failure).__name__) and str(failure) in outcome.reason
