"""The record parser: typing by schema, numbers as strings, unparseable values counted, not raised."""
import datetime as dt

import polars as pl

from domain import chunks
from domain.tables import TABLES, parse_records


def test_strings_that_are_numbers_are_typed():
    frame, report = parse_records("merchant", [{"merchant_id_offer": "5036", "merchant_status": "ACT",
                                                "brand_dk": "428916.0"}])
    assert frame.row(0) == (5036, "ACT", 428916)
    assert report.unparseable == {}


def test_missing_tokens_become_null():
    frame, _ = parse_records("merchant", [{"merchant_id_offer": 1, "merchant_status": "ACT", "brand_dk": "nan"}])
    assert frame["brand_dk"].to_list() == [None]


def test_unparseable_values_are_counted_with_examples():
    frame, report = parse_records("transaction", [
        {"transaction_id": "t1", "user_id": "x1", "event_date": "2025-13-45", "brand_dk": 1},
        {"transaction_id": "t2", "user_id": 7, "event_date": "2025-06-01 10:00:00", "brand_dk": 1},
    ])
    assert report.unparseable == {"user_id": 1, "event_date": 1}
    assert report.examples["event_date"] == ["2025-13-45"]
    assert frame["event_date"].to_list() == [None, dt.date(2025, 6, 1)]


def test_unknown_and_missing_columns_are_reported():
    _, report = parse_records("offer_reward", [{"user_id": 1, "offer_id": 2, "extra": 3}])
    assert report.unknown_columns == ["extra"]
    assert report.missing_columns == ["event_date", "reward_amt"]


def test_every_table_parses_an_empty_record_without_error():
    for name, schema in TABLES.items():
        frame, _ = parse_records(name, [{}])
        assert frame.columns == list(schema.columns)


def test_chunks_round_trip_and_respect_the_size_limit():
    frame = pl.DataFrame({"user_id": list(range(50_000)), "text": [f"row {i} " * 5 for i in range(50_000)]})
    payloads = chunks.split(frame, max_bytes=100_000)
    assert len(payloads) > 1 and all(len(p) <= 100_000 for p in payloads)
    assert pl.concat([chunks.decode(p) for p in payloads]).equals(frame)


def test_content_hash_depends_on_content_only():
    a, _ = parse_records("merchant", [{"merchant_id_offer": 1, "merchant_status": "ACT", "brand_dk": 2}])
    b, _ = parse_records("merchant", [{"merchant_id_offer": "1", "merchant_status": "ACT", "brand_dk": "2.0"}])
    c, _ = parse_records("merchant", [{"merchant_id_offer": 1, "merchant_status": "DLT", "brand_dk": 2}])
    assert chunks.content_hash("merchant", a) == chunks.content_hash("merchant", b)
    assert chunks.content_hash("merchant", a) != chunks.content_hash("merchant", c)


def test_mixed_json_types_in_one_column_type_alike():
    # Numbers, strings of numbers and floats of whole numbers in the same batch: one typed column.
    frame, report = parse_records("merchant", [
        {"merchant_id_offer": 5036, "merchant_status": "ACT", "brand_dk": 428916.0},
        {"merchant_id_offer": "5037", "merchant_status": " DLT ", "brand_dk": "428917"},
        {"merchant_id_offer": 5038.0, "merchant_status": None, "brand_dk": "NaN"},
    ])
    assert frame.rows() == [(5036, "ACT", 428916), (5037, "DLT", 428917), (5038, None, None)]
    assert report.unparseable == {}


def test_nested_values_are_unparseable_not_a_crash():
    # An object or a list where a scalar belongs: null and counted in a typed column, the rest is typed.
    frame, report = parse_records("merchant", [
        {"merchant_id_offer": {"id": 1}, "merchant_status": "ACT", "brand_dk": 2},
        {"merchant_id_offer": 3, "merchant_status": "ACT", "brand_dk": [4]},
    ])
    assert frame.rows() == [(None, "ACT", 2), (3, "ACT", None)]
    assert report.unparseable == {"merchant_id_offer": 1, "brand_dk": 1}
    assert report.examples["merchant_id_offer"] == ['{"id": 1}']  # the value sent, as JSON text
