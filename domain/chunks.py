"""Typed batches as compact Arrow IPC chunks that fit the broker's message limit."""
from __future__ import annotations

import hashlib
import io

import polars as pl
import pyarrow as pa
from pyarrow import ipc


def content_hash(table: str, frame: pl.DataFrame) -> str:
    """Identity of a batch's content: the same records typed the same way hash the same."""
    digest = hashlib.sha256(table.encode())
    digest.update(",".join(frame.columns).encode())
    digest.update(frame.hash_rows(seed=0, seed_1=1, seed_2=2, seed_3=3).to_numpy().tobytes())
    return digest.hexdigest()


def encode(frame: pl.DataFrame, compression: str = "zstd") -> bytes:
    sink = io.BytesIO()
    arrow = frame.to_arrow()
    with ipc.new_stream(sink, arrow.schema, options=ipc.IpcWriteOptions(compression=compression)) as writer:
        writer.write_table(arrow)
    return sink.getvalue()


def decode(payload: bytes) -> pl.DataFrame:
    with ipc.open_stream(pa.BufferReader(payload)) as reader:
        return pl.from_arrow(reader.read_all())  # type: ignore[return-value]


def split(frame: pl.DataFrame, max_bytes: int, compression: str = "zstd") -> list[bytes]:
    """Encode a frame as few chunks as possible, each under max_bytes (halving rows until they fit)."""
    whole = encode(frame, compression)
    if len(whole) <= max_bytes or frame.height <= 1:
        return [whole]
    parts = max(2, -(-len(whole) // max_bytes))
    rows = -(-frame.height // parts)
    chunks: list[bytes] = []
    for start in range(0, frame.height, rows):
        chunks.extend(split(frame.slice(start, rows), max_bytes, compression))
    return chunks
