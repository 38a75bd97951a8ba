"""The bounds at the door, without a server: bodies (type, size, pace), the batch envelope, records per
batch, and the size of every event a batch or a version can produce."""
from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from starlette.requests import Request

from domain import events, ledger
from domain.tables import MAX_REPORTED_CHARS, MAX_REPORTED_NAMES, TABLE_NAMES, RecordsError, parse_json_records
from ingest.service import BatchTooLarge, IngestService
from serving.body import BodyLimits, BodyMemory, BodyRefused, is_json, read_body
from serving.schemas import BatchEnvelopeError, split_batch

LIMITS = BodyLimits(max_bytes=1000, grace_s=0.3, min_bytes_per_s=1000)


def request(chunks: list[bytes], content_type: str | None = "application/json", delay_s: float = 0.0,
            length: int | None = None, origin: str | None = None) -> Request:
    """A request whose body arrives in these chunks, `delay_s` apart (a slow sender when large)."""
    headers = [] if content_type is None else [(b"content-type", content_type.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    pending = list(chunks)

    async def receive():
        await asyncio.sleep(delay_s)
        body = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers}, receive)


def read(req: Request, tmp_path, memory: BodyMemory | None = None):
    async def run():
        with await read_body(req, LIMITS, memory or BodyMemory(10_000), tmp_path) as body:
            return body.read()
    return asyncio.run(run())


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON", "application/problem+json"])
def test_json_content_types_are_accepted(content_type):
    assert is_json(content_type)


@pytest.mark.parametrize("content_type, origin", [
    ("text/plain", None), ("application/x-www-form-urlencoded", None), ("multipart/form-data; boundary=x", None),
    ("text/json-ish", None), (None, "https://elsewhere.example"), ("text/plain", "https://elsewhere.example")])
def test_other_content_types_get_415(content_type, origin, tmp_path):
    # text/plain, urlencoded, multipart and an untyped body are what a page elsewhere can make a browser send.
    with pytest.raises(BodyRefused) as refused:
        read(request([b"{}"], content_type, origin=origin), tmp_path)
    assert refused.value.status == 415 and "application/json" in refused.value.detail


def test_an_untyped_body_from_a_program_is_read_as_json(tmp_path):
    # What `requests.post(url, data=json.dumps(...))` sends: no Content-Type, and no Origin (not a page).
    assert read(request([b"{}"], content_type=None), tmp_path) == b"{}"


def test_bodies_are_held_in_memory_within_the_budget_and_on_disk_beyond_it(tmp_path):
    chunks = [bytes([65 + i]) * 90 for i in range(10)]  # 900 bytes
    memory = BodyMemory(budget=1000)

    async def run():
        first = await read_body(request(chunks, length=900), LIMITS, memory, tmp_path)
        assert memory.held == 900
        second = await read_body(request(chunks, length=900), LIMITS, memory, tmp_path)  # does not fit
        unknown = await read_body(request(chunks), LIMITS, memory, tmp_path)  # chunked: length unknown
        assert memory.held == 900
        for body in (first, second, unknown):
            with body:
                assert body.read() == b"".join(chunks)
        assert memory.held == 0
    asyncio.run(run())


def test_a_declared_length_over_the_limit_gets_413_before_anything_is_read(tmp_path):
    with pytest.raises(BodyRefused) as refused:
        read(request([b"x" * 10], length=300 * 2**20), tmp_path)
    assert refused.value.status == 413 and "314,572,800 bytes" in refused.value.detail
    assert not refused.value.close  # the server reads and drops the rest, so the client gets the answer


def test_a_body_growing_over_the_limit_gets_413_and_is_cut(tmp_path):
    with pytest.raises(BodyRefused) as refused:
        read(request([b"x" * 600, b"x" * 600]), tmp_path)  # no Content-Length: chunked
    assert refused.value.status == 413 and refused.value.close


def test_a_slow_sender_gets_408_after_the_grace_period_and_holds_nothing(tmp_path):
    memory = BodyMemory(10_000)
    started = time.monotonic()
    with pytest.raises(BodyRefused) as refused:
        read(request([b"x"] * 100, delay_s=0.1, length=100), tmp_path, memory)  # 10 bytes/s against 1000
    assert refused.value.status == 408 and refused.value.close
    assert time.monotonic() - started < 1.0 and memory.held == 0


def test_a_fast_sender_may_take_longer_than_the_grace_period(tmp_path):
    # 900 bytes at ~2,000 bytes/s: 0.45 s, past the 0.3 s grace but never behind the pace.
    assert len(read(request([b"x" * 90] * 10, delay_s=0.045), tmp_path)) == 900


# --- the batch envelope -------------------------------------------------------------------------

def body(**fields) -> bytes:
    return orjson.dumps({"version": "v1", "table": "merchant", "batch_id": 1, "total_batches": 1,
                         "records": [], **fields})


def test_the_envelope_is_validated_and_the_records_left_as_text():
    batch, records = split_batch(body(records=[{"merchant_id_offer": 1}, {}], extra={"anything": [1, 2]}))
    assert (batch.version, batch.table, batch.batch_id, batch.total_batches) == ("v1", "merchant", 1, 1)
    assert [bytes(memoryview(record)) for record in records] == [b'{"merchant_id_offer":1}', b"{}"]


@pytest.mark.parametrize("payload, named", [
    (b"[1, 2]", "body: expected a JSON object"),
    (b'{"version": "v1"', "body:"),
    (body(version="x" * 300), "version: longer than 256 bytes"),
    (body(records={"merchant_id_offer": 1}), "records: expected an array of objects"),
    (body(records=None), "records: expected an array of objects"),
])
def test_a_broken_envelope_is_named(payload, named):
    with pytest.raises(BatchEnvelopeError, match=named):
        split_batch(payload)


@pytest.mark.parametrize("field, value", [("batch_id", True), ("batch_id", 1.0), ("total_batches", "3"),
                                          ("batch_id", 0), ("version", "no spaces allowed")])
def test_envelope_fields_keep_their_types_and_ranges(field, value):
    from pydantic import ValidationError
    with pytest.raises(ValidationError, match=field):
        split_batch(body(**{field: value}))


def test_records_must_be_an_array_of_objects():
    with pytest.raises(RecordsError, match="expected an array"):
        parse_json_records("merchant", b'{"merchant_id_offer": 1}')
    with pytest.raises(RecordsError, match=r"records\[1\]: expected an object, got null"):
        parse_json_records("merchant", b'[{"merchant_id_offer": 1}, null]')


def test_a_missing_records_field_is_named():
    from pydantic import ValidationError
    with pytest.raises(ValidationError, match="records"):
        split_batch(b'{"version": "v1", "table": "merchant", "batch_id": 1, "total_batches": 1}')


# --- one parser, two readings -------------------------------------------------------------------

@pytest.mark.parametrize("records, unknown, missing", [
    ([{"merchant_id_offer": 1, "merchant_status": "ACT", "brand_dk": 2}], [], []),
    ([{"merchant_id_offer": 1, "merchant_status": "ACT", "brand_dk": 2, "colour": "red"}], ["colour"], []),
    ([{"merchant_id_offer": 1, "merchant_status": "ACT"}], [], ["brand_dk"]),
    (b'[{"merchant_id_offer": 1, "merchant_status": "ACT", "brand_dk": 1000000000000000000000000000000}]', [], []),
    ([{"merchant_id_offer": 1, "merchant_status": {"a": 1}, "brand_dk": [2]}], [], []),
    ([{"merchant_id_offer": 1, "merchant_status": 'say "x": y', "brand_dk": 2}], [], []),
    (b'[{"merchant_id_offer": 1,\n  "merchant_status": "ACT",\n  "brand_dk": 2}]', [], []),  # over lines
])
def test_both_readings_type_alike_and_report_exactly(records, unknown, missing):
    """Whether polars' reading is trusted or the exact one runs, the frame is the one the exact
    reading gives, and unknown and absent keys are reported."""
    import domain.tables as tables

    payload = records if isinstance(records, bytes) else orjson.dumps(records)
    frame, report = parse_json_records("merchant", payload)
    items = tables._RECORD_LIST.decode(payload)
    text, _ = tables._read_text_exactly(items, ["merchant_id_offer", "merchant_status", "brand_dk"])
    exact = text.select(tables._typed(name, dtype).alias(name) for name, dtype in tables.TABLES["merchant"].columns.items())
    assert frame.equals(exact) and frame.height == 1
    assert report.unknown_columns == unknown and report.missing_columns == missing


def test_ordinary_records_take_the_fast_reading(monkeypatch):
    import domain.tables as tables

    def refuse(*args):
        raise AssertionError("the exact reading ran on ordinary records")
    monkeypatch.setattr(tables, "_read_text_exactly", refuse)
    records = [{"merchant_id_offer": i, "merchant_status": "ACT" if i % 3 else None, "brand_dk": str(i)}
               for i in range(1, 1000)]
    frame, report = parse_json_records("merchant", orjson.dumps(records))
    assert frame.height == 999 and not report.unparseable and not report.missing_columns


def test_a_batch_read_in_slices_is_typed_and_reported_as_in_one(monkeypatch):
    import domain.tables as tables

    records = [{"merchant_id_offer": i if i % 5 else f"x{i}", "merchant_status": " ACT ", "brand_dk": i * 1.0,
                **({"colour": "red"} if i == 17 else {})} for i in range(1, 40)]
    whole = parse_json_records("merchant", orjson.dumps(records))
    monkeypatch.setattr(tables, "SLICE_RECORDS", 7)  # six slices, one read exactly (the unknown key)
    sliced = parse_json_records("merchant", orjson.dumps(records))
    assert sliced[0].equals(whole[0]) and sliced[1] == whole[1]
    assert sliced[1].unparseable == {"merchant_id_offer": 7} and sliced[1].unknown_columns == ["colour"]
    with pytest.raises(RecordsError, match=r"records\[23\]: expected an object, got an array"):
        parse_json_records("merchant", orjson.dumps(records[:23] + [[1]] + records[23:]))


def test_what_a_batch_reports_about_itself_is_cut_short():
    records = [{"user_id": "x" * 5000, "offer_id": 1, **{f"unknown_{i}_" + "k" * 500: 1 for i in range(100)}}]
    _, report = parse_json_records("offer_activation", orjson.dumps(records))
    assert len(report.unknown_columns) == MAX_REPORTED_NAMES
    assert all(len(name) <= MAX_REPORTED_CHARS for name in report.unknown_columns)
    assert report.unparseable == {"user_id": 1} and len(report.examples["user_id"][0]) == MAX_REPORTED_CHARS


def test_more_records_than_a_batch_may_hold_get_refused_before_they_are_cut_apart():
    service = IngestService(event_log=None, ledger_view=None, ledger_follower=None, max_chunk_bytes=1 << 20,
                            max_batch_records=10)
    with pytest.raises(BatchTooLarge, match="more than 10 records"):
        service.check_records(body(records=[{}] * 11))
    service.check_records(body(records=[{}] * 10))


# --- every event under the broker's limit -------------------------------------------------------

def worst_batch(version: str, table: str, batch_id: int, total: int,
                chunks: int = events.MAX_CHUNKS_PER_BATCH) -> events.BatchReceived:
    """A BatchReceived as large as a batch can make it: longest version name, every column
    unparseable with the longest examples (escaped characters), the most unknown columns, the most
    chunks a batch may take (the manifest does not carry them: fewer where only it is measured)."""
    example = "\u0001" * MAX_REPORTED_CHARS  # escaped as \\u0001: 6 bytes of JSON a character
    columns = [f"column_{i}" for i in range(9)]
    return events.BatchReceived(
        version=version, table=table, batch_id=batch_id, total_batches=total, rows=10**9,
        content_hash="f" * 64, chunk_offsets=[2**62 + i for i in range(chunks)],
        unparseable={c: 10**9 for c in columns}, examples={c: [example] * 3 for c in columns},
        unknown_columns=[example] * MAX_REPORTED_NAMES, missing_columns=columns, received_at="t" * 32)


def test_the_largest_batch_event_fits_the_broker():
    assert len(worst_batch("v" * 64, "financial_account", 100_000, 100_000).to_bytes()) < events.MAX_EVENT_BYTES


def test_a_version_of_thousands_of_batches_seals_into_one_small_event():
    """Five thousand batches per table in every table, a third of them missing, each the worst a
    batch can report: the manifest and its VersionSealed stay small."""
    version_ledger = None
    offset = 0
    for table in TABLE_NAMES:
        for batch_id in range(1, 7_501):
            if batch_id % 3 == 0:
                continue
            version_ledger, _ = ledger.apply(version_ledger, offset,
                                             worst_batch("v" * 64, table, batch_id, 7_500, chunks=1))
            offset += 1
    version_ledger, outcome = ledger.apply(version_ledger, offset, events.CommitRequested(version="v" * 64))
    assert outcome is ledger.Outcome.COMMITTED and len(version_ledger.batches) == 50_000
    manifest = ledger.manifest(version_ledger, TABLE_NAMES)
    assert manifest["tables"]["transaction"]["missing_batch_count"] == 2_500
    assert manifest["tables"]["transaction"]["missing_batches"][:3] == [3, 6, 9]
    sealed = events.VersionSealed(version="v" * 64, sequence=offset, snapshot_prefix="p" * 200, manifest=manifest)
    assert len(sealed.to_bytes()) < 200_000


def test_a_claim_of_a_billion_batches_is_counted_not_listed():
    version_ledger, _ = ledger.apply(None, 0, worst_batch("v1", "transaction", 1, 10**9, chunks=1))
    started = time.monotonic()
    table = ledger.manifest(version_ledger, TABLE_NAMES)["tables"]["transaction"]
    assert time.monotonic() - started < 0.1
    assert table["missing_batch_count"] == 10**9 - 1 and table["missing_batches"] == list(range(2, 22))


def test_an_event_over_the_limit_is_refused_naming_it():
    with pytest.raises(events.EventTooLarge, match="BatchReceived of v1"):
        events.BatchReceived(version="v1", table="t", batch_id=1, total_batches=1, rows=1, content_hash="h",
                             chunk_offsets=list(range(200_000))).to_bytes()
