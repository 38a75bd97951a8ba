"""`dvc repro` on a fresh clone: no services, no manual steps; it writes the reports."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_dvc_repro_on_a_clean_clone(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    for name in ("LAL_BROKER", "LAL_S3_ENDPOINT", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)  # proof that no service is needed
    done = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    metrics = json.loads((clone / "reports" / "train_metrics.json").read_text())
    assert metrics["map_at_100"] > metrics["map_at_100_random"]
    drift = json.loads((clone / "reports" / "drift.json").read_text())
    assert drift["drift_detected"] is True  # the series' second version is a behaviour drift
    assert json.loads((clone / "reports" / "validation.json").read_text())["valid"] is True
