"""Errors the adapters raise for their callers to tell apart."""
from __future__ import annotations


class PeerUnavailable(ConnectionError):
    """An adapter could not reach its peer (e.g. `dvc push` could not reach the S3 remote): worth
    trying again later (processors/failures.py counts it as transient)."""
