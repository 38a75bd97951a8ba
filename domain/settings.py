"""Configuration: params.yaml plus environment variables, read in this one place."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from domain.layout import Layout

ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to find its peers and its parameters."""

    deployment: str
    broker: str
    s3_endpoint: str | None
    s3_bucket: str
    mlflow_uri: str
    work_dir: Path
    port: int
    params: dict[str, Any] = field(repr=False)

    def topic(self, name: str) -> str:
        """Topics are namespaced by deployment so test runs never see each other's events."""
        return f"{self.deployment}.{name}"

    @property
    def layout(self) -> Layout:
        """Every object-store key and local path of this deployment (domain/layout.py)."""
        return Layout(self.deployment, self.work_dir)


def load_params(path: Path | None = None) -> dict[str, Any]:
    path = path or Path(_env("LAL_PARAMS", str(ROOT / "params.yaml")))
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings(
        deployment=_env("LAL_DEPLOYMENT", "lal"),
        broker=_env("LAL_BROKER", "localhost:9092"),
        s3_endpoint=os.environ.get("LAL_S3_ENDPOINT") or None,
        s3_bucket=_env("LAL_S3_BUCKET", "lookalike"),
        mlflow_uri=_env("MLFLOW_TRACKING_URI", f"sqlite:///{ROOT / 'var' / 'mlflow.db'}"),
        work_dir=Path(_env("LAL_WORK_DIR", str(ROOT / "var"))),
        port=int(_env("PORT", "8080")),
        params=load_params(),
    )
