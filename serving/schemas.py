"""Request and response models of the HTTP API (the project's OpenAPI schema comes from these)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class DataBatchRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    version: StrictStr = Field(pattern=VERSION_PATTERN, description="Data version identifier")
    table: StrictStr = Field(description="Logical table name")
    batch_id: StrictInt = Field(ge=1)
    total_batches: StrictInt = Field(ge=1)
    records: list[dict[str, Any]]


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
