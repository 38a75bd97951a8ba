"""Request and response models of the HTTP API (the project's OpenAPI schema comes from these)."""
from __future__ import annotations

from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class DataBatchRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    version: StrictStr = Field(pattern=VERSION_PATTERN, description="Data version identifier")
    table: StrictStr = Field(description="Logical table name")
    batch_id: StrictInt = Field(ge=1)
    total_batches: StrictInt = Field(ge=1)
    records: list[dict[str, Any]]


class BatchEnvelopeError(ValueError):
    """The body is not a JSON object, or a field of the batch's envelope is not a plain value."""


_ABSENT = msgspec.Raw(b"")


class _BatchBody(msgspec.Struct):
    """A batch's body in one pass: the envelope's fields as their JSON text (validated by
    DataBatchRequest), the records cut apart but not decoded. Other fields are ignored."""

    version: msgspec.Raw = _ABSENT
    table: msgspec.Raw = _ABSENT
    batch_id: msgspec.Raw = _ABSENT
    total_batches: msgspec.Raw = _ABSENT
    records: list[msgspec.Raw] | msgspec.UnsetType = msgspec.UNSET


_BATCH_BODY = msgspec.json.Decoder(_BatchBody)
# The envelope's fields are short strings and numbers; a longer value is refused before it is decoded.
_MAX_FIELD_JSON = 256


def split_batch(body: bytes) -> tuple[DataBatchRequest, list[msgspec.Raw]]:
    """A batch's envelope, validated by DataBatchRequest, and its records as their JSON text, one
    each (views into the body, not copies), for the table's parser (domain/tables.py): the records
    are never decoded into Python objects here."""
    try:
        parts = _BATCH_BODY.decode(body)
    except msgspec.ValidationError as error:
        if "$.records" in str(error):
            raise BatchEnvelopeError("records: expected an array of objects") from None
        raise BatchEnvelopeError("body: expected a JSON object") from None
    except msgspec.DecodeError as error:
        raise BatchEnvelopeError(f"body: {error}") from None
    envelope: dict[str, Any] = {}
    for name in ("version", "table", "batch_id", "total_batches"):
        raw = memoryview(getattr(parts, name))
        if len(raw) > _MAX_FIELD_JSON:
            raise BatchEnvelopeError(f"{name}: longer than {_MAX_FIELD_JSON} bytes; expected a short value")
        if len(raw):
            envelope[name] = msgspec.json.decode(raw)
    if parts.records is not msgspec.UNSET:
        envelope["records"] = []  # validated as the table's records, by its parser
    return DataBatchRequest.model_validate(envelope), parts.records


class DataBatchResponse(BaseModel):
    status: str
    version: str
    table: str
    batch_id: int
    rows: int
    outcome: str


class DataCommitRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    version: StrictStr = Field(pattern=VERSION_PATTERN)


class DataCommitResponse(BaseModel):
    status: str
    version: str
    tables_received: list[str]


class LookalikeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    merchant_id: StrictInt = Field(ge=1)
    offer_id: StrictInt = Field(ge=1)
    top_n: StrictInt = Field(ge=1, le=1000)


class AudienceMember(BaseModel):
    user_id: int
    score: float


class Reason(BaseModel):
    feature: str
    impact: float


class LookalikeResponse(BaseModel):
    merchant_id: int
    offer_id: int
    audience: list[AudienceMember]
    audience_size: int
    model_version: str
    reasons: list[Reason]
    candidates: int
    data_version: str


class LookalikeBatchRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    requests: list[LookalikeRequest] = Field(min_length=1, max_length=1000)


class LookalikeBatchResponse(BaseModel):
    results: list[LookalikeResponse]
