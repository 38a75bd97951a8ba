"""The batch ledger fold: idempotency, last-write-wins, closing on commit, manifest."""
from domain.events import BatchReceived, CommitRequested
from domain.ledger import Outcome, VersionLedger, apply, manifest
from domain.tables import TABLE_NAMES


def batch(table="transaction", batch_id=1, total=2, digest="a", rows=10, version="v1"):
    return BatchReceived(version=version, table=table, batch_id=batch_id, total_batches=total, rows=rows,
                         content_hash=digest, chunk_offsets=[batch_id * 10])


def fold(events):
    ledger, outcomes = None, []
    for offset, event in enumerate(events):
        ledger, outcome = apply(ledger, offset, event)
        outcomes.append(outcome)
    return ledger, outcomes


def test_same_batch_twice_is_a_duplicate_and_counts_once():
    ledger, outcomes = fold([batch(), batch()])
    assert outcomes == [Outcome.ACCEPTED, Outcome.DUPLICATE]
    assert manifest(ledger, TABLE_NAMES)["tables"]["transaction"]["rows"] == 10


def test_resend_with_other_content_replaces_the_earlier_one():
    ledger, outcomes = fold([batch(digest="a", rows=10), batch(digest="b", rows=7)])
    assert outcomes[1] is Outcome.REPLACED
    table = manifest(ledger, TABLE_NAMES)["tables"]["transaction"]
    assert table["rows"] == 7 and table["replaced_batches"] == 1


def test_commit_closes_the_version_and_only_the_first_commit_counts():
    ledger, outcomes = fold([batch(), CommitRequested(version="v1"), CommitRequested(version="v1"), batch(batch_id=2)])
    assert outcomes[1:] == [Outcome.COMMITTED, Outcome.DUPLICATE_COMMIT, Outcome.REJECTED_CLOSED]
    assert ledger.commit_offset == 1 and ledger.late_batches == 1
    assert ledger.tables_received() == ["transaction"]


def test_redelivered_event_changes_nothing():
    ledger, _ = fold([batch(), CommitRequested(version="v1")])
    again, outcome = apply(ledger, 0, batch(digest="zzz"))
    assert outcome is Outcome.ALREADY_APPLIED and again.batches["transaction/1"].content_hash == "a"


def test_manifest_names_missing_batches_and_tables():
    ledger, _ = fold([batch(batch_id=1, total=3), batch(batch_id=3, total=3), CommitRequested(version="v1")])
    result = manifest(ledger, TABLE_NAMES)
    assert result["tables"]["transaction"]["missing_batches"] == [2]
    assert "people" in result["tables_missing"] and "transaction" not in result["tables_missing"]
    assert result["sequence"] == 2


def test_commit_without_batches_gives_an_empty_manifest():
    ledger, outcomes = fold([CommitRequested(version="v9")])
    assert outcomes == [Outcome.COMMITTED]
    assert manifest(ledger, TABLE_NAMES)["tables"] == {}


def test_ledger_round_trips_through_a_dict():
    ledger, _ = fold([batch(), batch(table="people", batch_id=1, total=1)])
    assert VersionLedger.from_dict(ledger.to_dict()) == ledger


def test_an_entry_is_its_event_with_its_offset_and_survives_a_checkpoint():
    event = BatchReceived(version="v1", table="people", batch_id=3, total_batches=4, rows=5, content_hash="h",
                          chunk_offsets=[7, 8], unparseable={"age_bucket": 2}, examples={"age_bucket": ["x"]},
                          unknown_columns=["extra"], missing_columns=["region"], received_at="now")
    ledger, _ = fold([batch(), event])
    entry = ledger.batches["people/3"]
    assert entry.offset == 1
    assert {name: getattr(entry, name) for name in vars(entry) if name != "offset"} == {
        "table": "people", "batch_id": 3, "total_batches": 4, "rows": 5, "content_hash": "h", "chunk_offsets": [7, 8],
        "unparseable": {"age_bucket": 2}, "examples": {"age_bucket": ["x"]}, "unknown_columns": ["extra"],
        "missing_columns": ["region"]}
    assert entry.chunk_offsets is not event.chunk_offsets  # the fold never shares state with the event
    assert VersionLedger.from_dict(ledger.to_dict()) == ledger
