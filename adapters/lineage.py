"""Data lineage with DVC: every valid version's snapshot and catalog are tracked and pushed to the
S3 remote; each training is recorded as the `train` stage of the service's DVC project, so its
dvc.lock names the exact catalog and model (by md5) that the deployed model came from."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from adapters.errors import PeerUnavailable
from domain.settings import Settings

log = logging.getLogger(__name__)

ARCHIVE = "archive"  # .dvc records of versions whose data now lives only in the remote


class Lineage:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = settings.layout.lineage()
        self.remote = f"s3://{settings.s3_bucket}/{settings.layout.lineage_remote()}"

    def _dvc(self, *args: str) -> str:
        env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
        done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=self.root, env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            message = f"dvc {' '.join(args)} failed: {done.stderr.strip()[-800:]}"
            # A push only moves files to the S3 remote: when it fails, the remote was not reachable
            # (local problems fail the `add` before it), and the pipeline tries again later.
            raise (PeerUnavailable if args[0] == "push" else RuntimeError)(message)
        return done.stdout

    def ensure_repo(self) -> None:
        if (self.root / ".dvc").exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self._dvc("init", "--no-scm", "-q")
        self._dvc("config", "core.analytics", "false")
        self._dvc("remote", "add", "-d", "-f", "storage", self.remote)
        if self.settings.s3_endpoint:
            self._dvc("remote", "modify", "storage", "endpointurl", self.settings.s3_endpoint)

    def track(self, kind: str, version: str, source: Path) -> str:
        """Put a folder under DVC control as data/<kind>/<version>, push it, return its md5."""
        self.ensure_repo()
        target = self.root / "data" / kind / version
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(".*"))
        relative = target.relative_to(self.root).as_posix()
        self._dvc("add", "-q", relative)
        self._dvc("push", "-q", f"{relative}.dvc")
        meta = yaml.safe_load((self.root / f"{relative}.dvc").read_text())
        return meta["outs"][0]["md5"]

    def prune(self) -> list[str]:
        """Keep in the workspace and the local DVC cache only what the last `train` stage names (its
        catalog and model). Every other version's .dvc file moves to archive/ (which DVC ignores: the
        record stays, its md5 names the data in the remote), its copy leaves the workspace, and
        `dvc gc` drops it from the local cache. Returns the records archived."""
        if not (self.root / ".dvc").exists():
            return []
        ignore = self.root / ".dvcignore"
        ignored = ignore.read_text().split() if ignore.exists() else []
        if f"{ARCHIVE}/" not in ignored:
            with ignore.open("a") as handle:
                handle.write(f"{ARCHIVE}/\n")
        lock = self.root / "dvc.lock"
        kept: set[str] = set()
        if lock.exists():
            train = yaml.safe_load(lock.read_text())["stages"]["train"]
            kept = {entry["path"] for entry in train.get("deps", []) + train.get("outs", [])}
        archived = []
        for record in sorted((self.root / "data").glob("*/*.dvc")):
            tracked = record.with_suffix("")
            if tracked.relative_to(self.root).as_posix() in kept:
                continue
            destination = self.root / ARCHIVE / record.relative_to(self.root)
            destination.parent.mkdir(parents=True, exist_ok=True)
            record.replace(destination)
            shutil.rmtree(tracked, ignore_errors=True)
            archived.append(destination.relative_to(self.root).as_posix())
        for model in sorted((self.root / "models").glob("*")):
            if f"models/{model.name}" not in kept:  # an earlier training's output, pushed when recorded
                shutil.rmtree(model, ignore_errors=True)
        if archived:
            self._dvc("gc", "--workspace", "--force", "-q")
            log.info("lineage: archived %s; the local cache holds %s", archived, sorted(kept))
        return archived

    def record_training(self, catalog_version: str, model_version: str, model_dir: Path) -> dict[str, str]:
        """Record the training as the DVC stage `train` (deps: the catalog; outs: the model)."""
        self.ensure_repo()
        model_target = self.root / "models" / model_version
        shutil.rmtree(model_target, ignore_errors=True)
        shutil.copytree(model_dir, model_target)
        catalog = f"data/catalog/{catalog_version}"
        model = f"models/{model_version}"
        self._dvc("stage", "add", "--force", "-q", "-n", "train", "-d", catalog, "-o", model,
                  f"python -m ml.train --catalog {catalog} --out {model}")
        self._dvc("commit", "-f", "-q", "train")
        self._dvc("push", "-q", "train")
        lock_text = (self.root / "dvc.lock").read_text()
        lock = yaml.safe_load(lock_text)["stages"]["train"]
        return {
            "data_md5": next(d["md5"] for d in lock["deps"] if d["path"] == catalog),
            "model_md5": next(o["md5"] for o in lock["outs"] if o["path"] == model),
            "dvc_lock": lock_text,
        }
