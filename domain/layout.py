"""Where everything lives: every object-store key, every local path a process keeps, and the file names
the stages hand each other, in one place. Names only, no I/O.

Object store (one bucket, keys namespaced by deployment so test runs never meet):

    <deployment>/snapshots/<version>/<table>.parquet, manifest.json   what a sealed version delivered
    <deployment>/snapshots/<version>/REJECTED.json                    set when the version failed validation
    <deployment>/catalog/<version>/...                                the merged catalog after the version
    <deployment>/catalog/<version>/bundle/...                         its serving bundle (a saved feature state)
    <deployment>/reports/<version>/<name>                             validation and drift reports
    <deployment>/models/<model_version>/model.cbm, ...                a trained model and its metadata
    <deployment>/dvc/...                                              the DVC remote of catalogs and models

Local (under the work dir): copies fetched from the store, checkpoints and scratch space, each kind
in its own folder so each can be pruned on its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MODEL_FILE = "model.cbm"   # the CatBoost model inside a model folder (ml.model writes it)
BUNDLE_DIR = "bundle"      # the serving bundle inside a catalog folder
MANIFEST = "manifest.json"  # a snapshot's manifest, written last: its presence means the snapshot is whole
REJECTED = "REJECTED.json"
COMPLETE = ".complete"     # a local catalog copy finished writing


@dataclass(frozen=True)
class Layout:
    deployment: str
    work_dir: Path

    # --- object store keys ---------------------------------------------------------------------------

    def key(self, *parts: str) -> str:
        return "/".join((self.deployment, *parts))

    def snapshot(self, version: str) -> str:
        return self.key("snapshots", version)

    def catalog(self, version: str) -> str:
        return self.key("catalog", version)

    def report(self, version: str, name: str) -> str:
        return self.key("reports", version, name)

    def model(self, model_version: str) -> str:
        return self.key("models", model_version)

    def lineage_remote(self) -> str:
        """The DVC remote's folder (DVC lays out its own content-addressed files below it)."""
        return self.key("dvc")

    # --- local paths ---------------------------------------------------------------------------------

    def pipeline_cache(self) -> Path:
        """The pipeline's copies of snapshots, catalogs, models and reports: <kind>/<name>."""
        return self.work_dir / "pipeline"

    def serving_cache(self) -> Path:
        """The API's copies of the deployed model and its bundle: models/<model_version>, bundles/<catalog>."""
        return self.work_dir / "serving"

    def checkpoints(self) -> Path:
        """The API's projections, saved with the offsets they were folded to."""
        return self.work_dir / "projections" / self.deployment

    def faust_state(self) -> Path:
        """The Faust worker's RocksDB tables: they live and die with the deployment's log."""
        return self.work_dir / "faust" / self.deployment

    def lineage(self) -> Path:
        """The DVC workspace that tracks catalogs and models."""
        return self.work_dir / "lineage"

    def scratch(self, *parts: str) -> Path:
        """Temporary files (sealing, request bodies that do not fit in memory)."""
        return self.work_dir.joinpath("tmp", *parts)

    def ops(self, namespace: str) -> Path:
        """The work dir of an `ops rerun` namespace."""
        return self.work_dir / "ops" / namespace


def bundle(catalog: str) -> str:
    """The bundle's key (or folder) inside a catalog's key (or folder)."""
    return f"{catalog}/{BUNDLE_DIR}"


def model_file(model_dir: Path) -> Path:
    return Path(model_dir) / MODEL_FILE
