"""Smoke check of an S3-compatible server with boto3: what the service and MLflow rely on.

    python scripts/smoke_s3.py [endpoint-url] [bucket]
        (defaults: $LAL_S3_ENDPOINT or http://127.0.0.1:9000, a throw-away bucket)

Creates the bucket (idempotently, with path-style addressing), puts and gets a small object,
uploads a 12 MiB file (multipart) and downloads it back, lists by prefix, deletes. Credentials and
region come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_DEFAULT_REGION.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import uuid
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError


def main() -> None:
    endpoint = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("LAL_S3_ENDPOINT", "http://127.0.0.1:9000")
    bucket = sys.argv[2] if len(sys.argv) > 2 else f"smoke-{uuid.uuid4().hex[:8]}"
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    s3 = boto3.client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}))
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        s3.create_bucket(Bucket=bucket)
    s3.head_bucket(Bucket=bucket)
    print(f"[s3] bucket {bucket} at {endpoint} OK")

    prefix = f"smoke/{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=bucket, Key=f"{prefix}/small.json", Body=b'{"ok": true}')
    assert s3.get_object(Bucket=bucket, Key=f"{prefix}/small.json")["Body"].read() == b'{"ok": true}'
    print("[s3] put/get OK")

    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.bin"
        big.write_bytes(os.urandom(12 * 1024 * 1024))
        config = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
        s3.upload_file(str(big), bucket, f"{prefix}/big.bin", Config=config)
        back = Path(tmp) / "back.bin"
        s3.download_file(bucket, f"{prefix}/big.bin", str(back), Config=config)
        assert hashlib.sha256(big.read_bytes()).digest() == hashlib.sha256(back.read_bytes()).digest()
    print("[s3] multipart upload (12 MiB) and download OK")

    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", []))
    assert keys == [f"{prefix}/big.bin", f"{prefix}/small.json"], keys
    for key in keys:
        s3.delete_object(Bucket=bucket, Key=key)
    print("[s3] list by prefix and delete OK")
    print("[s3] all checks passed")


if __name__ == "__main__":
    main()
