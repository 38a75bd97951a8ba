"""Disk caches stay bounded: the pipeline's local copies, the API's bundles and the DVC workspace and
cache keep what the next version needs; everything else is in S3 (or the DVC remote) already."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import yaml

from adapters.lineage import Lineage
from adapters.storage import prune_local_copies
from domain.settings import settings


def test_only_the_kept_local_copies_stay(tmp_path):
    for name in ("v1", "v2", "v3"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "data.parquet").write_bytes(b"x" * 10)
    (tmp_path / "v4.part").write_bytes(b"half")
    assert prune_local_copies(tmp_path, {"v3", "v9"}) == ["v1", "v2", "v4.part"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v3"]
    assert prune_local_copies(tmp_path / "missing", set()) == []


def _folder(path, content: str):
    path.mkdir(parents=True)
    (path / "table.parquet").write_text(content)
    return path


def _cache_objects(root) -> int:
    return sum(1 for p in (root / ".dvc" / "cache").rglob("*") if p.is_file())


def test_the_lineage_keeps_only_the_last_training_and_archives_the_rest(tmp_path):
    config = dataclasses.replace(settings(), work_dir=tmp_path / "work", s3_endpoint=None)
    lineage = Lineage(config)
    lineage.remote = str(tmp_path / "remote")  # a local DVC remote stands in for S3
    for version in ("v1", "v2", "v3"):
        lineage.track("snapshots", version, _folder(tmp_path / "in" / "snap" / version, f"snapshot {version}"))
        lineage.track("catalog", version, _folder(tmp_path / "in" / "cat" / version, f"catalog {version}"))
    recorded = lineage.record_training("v2", "1.0", _folder(tmp_path / "in" / "model1", "model 1.0"))
    before = _cache_objects(lineage.root)

    archived = lineage.prune()

    root = lineage.root
    assert sorted(archived) == sorted(f"archive/data/{kind}/{v}.dvc" for kind in ("snapshots", "catalog")
                                      for v in ("v1", "v2", "v3") if (kind, v) != ("catalog", "v2"))
    assert sorted(p.relative_to(root).as_posix() for p in (root / "data").glob("*/*")) == \
        ["data/catalog/v2", "data/catalog/v2.dvc"]
    assert (root / "models" / "1.0").is_dir() and (root / "dvc.lock").read_text() == recorded["dvc_lock"]
    assert _cache_objects(root) < before
    # The archived records still name data the remote holds.
    record = yaml.safe_load((root / "archive" / "data" / "catalog" / "v1.dvc").read_text())
    assert record["outs"][0]["md5"]
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "-q"], cwd=root, capture_output=True, text=True)
    assert status.returncode == 0, status.stdout + status.stderr
    assert lineage.prune() == []  # nothing more to do


def test_the_pipeline_keeps_what_the_next_version_needs(tmp_path):
    from domain import events
    from processors.pipeline import Pipeline
    from projections.views import PipelineViews

    class NoLineage:
        def prune(self):
            return []

    config = dataclasses.replace(settings(), work_dir=tmp_path)
    views = PipelineViews()
    for offset, event in enumerate([
        events.CatalogPublished(version="v1", catalog_prefix="lal/catalog/v1", content_hash="", stats={}),
        events.ModelDeployed(version="v1", model_version="1.0", run_id="r", trained_on="v1", metrics={},
                             model_key="lal/models/1.0", features_count=1, data_hash="", catalog_prefix="lal/catalog/v1"),
        events.CatalogPublished(version="v3", catalog_prefix="lal/catalog/v3", content_hash="", stats={}),
    ]):
        views.apply(offset, event.to_bytes())
    pipeline = Pipeline(config, None, None, None, NoLineage(), views)  # type: ignore[arg-type]
    for kind, names in {"snapshots": ["v2", "v3"], "catalog": ["v1", "v2", "v3"], "models": ["1.0", "2.0"],
                        "reports": ["v3"]}.items():
        for name in names:
            (pipeline.cache / kind / name).mkdir(parents=True)
    pipeline.prune_cache()
    left = sorted(p.relative_to(pipeline.cache).as_posix() for p in pipeline.cache.glob("*/*"))
    assert left == ["catalog/v1", "catalog/v3", "models/1.0"]
