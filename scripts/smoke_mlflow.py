"""Smoke check of the MLflow tracking server: a run with params, metrics, tags and an artifact.

    python scripts/smoke_mlflow.py [tracking-uri]   (default: $MLFLOW_TRACKING_URI or http://127.0.0.1:5000)

The server proxies artifacts (--artifacts-destination s3://...), so the client needs no S3
credentials; the artifact is downloaded back through the server and compared.
"""
from __future__ import annotations

import os
import sys
import tempfile
import uuid
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient


def main() -> None:
    uri = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    mlflow.set_tracking_uri(uri)
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    experiment_id = mlflow.create_experiment(name)
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(tmp) / "report.json"
        artifact.write_text('{"smoke_check": 1}')
        with mlflow.start_run(experiment_id=experiment_id, run_name="smoke") as run:
            mlflow.log_params({"depth": 6, "iterations": 10})
            mlflow.log_metrics({"smoke_check": 1.0})  # a connectivity check, never a model metric
            mlflow.set_tags({"data_version": "v1"})
            mlflow.log_artifact(str(artifact))
            run_id = run.info.run_id
        client = MlflowClient()
        got = client.get_run(run_id)
        assert got.data.metrics["smoke_check"] == 1.0 and got.data.params["depth"] == "6"
        print(f"[mlflow] run {run_id} in {name}: artifact_uri {got.info.artifact_uri}")
        back = Path(client.download_artifacts(run_id, "report.json", tmp + "/back"))
        assert back.read_text() == artifact.read_text()
    client.delete_experiment(experiment_id)
    print("[mlflow] run, params, metrics, artifact round trip OK")
    print("[mlflow] all checks passed")


if __name__ == "__main__":
    main()
