"""The object store (S3 API: MinIO in compose, SeaweedFS or moto locally): files and folders by key."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from domain.layout import COMPLETE
from domain.settings import Settings

log = logging.getLogger(__name__)


class ObjectStore:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.bucket = settings.s3_bucket
        limits = settings.params["s3"]
        # botocore retries what is worth retrying (connection errors, timeouts, 5xx, throttling) with
        # jittered exponential backoff; a socket timeout turns a paused server into such an error.
        self.client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint,
            config=Config(s3={"addressing_style": "path"},
                          retries={"max_attempts": int(limits["max_attempts"]), "mode": "standard"},
                          connect_timeout=float(limits["connect_timeout_s"]), read_timeout=float(limits["read_timeout_s"])),
        )

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def ensure_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    def put_bytes(self, key: str, payload: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=payload)

    def get_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError:
            return False

    def put_file(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, key)

    def get_file(self, key: str, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        self.client.download_file(self.bucket, key, str(partial))
        partial.replace(path)
        return path

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(keys)

    def copy_dir(self, source: ObjectStore, source_prefix: str, prefix: str) -> list[str]:
        """Copy every object under `source_prefix` of `source` (same S3 server, perhaps another bucket)
        to the same relative keys under `prefix`, server-side."""
        keys = []
        for key in source.list_keys(source_prefix + "/"):
            target = f"{prefix}/{key[len(source_prefix) + 1:]}"
            self.client.copy_object(Bucket=self.bucket, Key=target, CopySource={"Bucket": source.bucket, "Key": key})
            keys.append(target)
        return keys

    def put_dir(self, prefix: str, directory: Path) -> list[str]:
        keys = []
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            key = f"{prefix}/{path.relative_to(directory).as_posix()}"
            self.put_file(key, path)
            keys.append(key)
        return keys

    def get_dir(self, prefix: str, directory: Path) -> Path:
        """Download a folder; a complete local copy (marked by .complete) is reused, not fetched again."""
        marker = directory / COMPLETE
        if marker.exists():
            return directory
        for key in self.list_keys(prefix + "/"):
            self.get_file(key, directory / key[len(prefix) + 1:])
        directory.mkdir(parents=True, exist_ok=True)
        marker.touch()
        return directory


def prune_local_copies(parent: Path, keep: set[str]) -> list[str]:
    """Delete the local copies (get_dir folders, and their partial files) under `parent` except those
    named in `keep`; the objects stay in the store, so anything deleted is fetched again when next
    needed. Returns the names deleted. Bounds a cache that would otherwise grow with every version."""
    if not parent.is_dir():
        return []
    deleted = []
    for entry in sorted(parent.iterdir()):
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        deleted.append(entry.name)
    if deleted:
        log.info("%s: deleted the local copies %s (kept %s)", parent, deleted, sorted(keep))
    return deleted
