"""Experiment tracking in MLflow: one run per training, with params, metrics, lineage tags, artifacts."""
from __future__ import annotations

import logging
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from domain.settings import Settings

log = logging.getLogger(__name__)


class Tracker:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.experiment_name = f"lookalike-{settings.deployment}"
        mlflow.set_tracking_uri(settings.mlflow_uri)

    def _experiment_id(self) -> str:
        experiment = mlflow.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        return mlflow.create_experiment(self.experiment_name)

    def log_training(self, *, data_version: str, model_version: str, params: dict[str, str],
                     metrics: dict[str, float], tags: dict[str, str], artifacts: list[Path]) -> str:
        """Record one training run and return its MLflow run id. A run of the same data and model
        version already recorded (by an attempt stopped before its outcome reached the log) is
        returned as it is if complete, and replaced if it was cut short: one run per training."""
        experiment_id = self._experiment_id()
        client = MlflowClient()
        for earlier in client.search_runs(
                [experiment_id], f"tags.data_version = '{data_version}' and tags.model_version = '{model_version}'"):
            if earlier.info.status == "FINISHED":
                return earlier.info.run_id
            client.delete_run(earlier.info.run_id)
        # Tagged at creation, so even a run cut short is found (and replaced) by the next attempt.
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"model-{model_version}-on-{data_version}",
                              tags={"data_version": data_version, "model_version": model_version, **tags}) as run:
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            for artifact in artifacts:
                if artifact.is_dir():
                    mlflow.log_artifacts(str(artifact), artifact_path=artifact.name)
                elif artifact.exists():
                    mlflow.log_artifact(str(artifact))
            return run.info.run_id

    def tag_run(self, run_id: str, key: str, value: str) -> None:
        MlflowClient().set_tag(run_id, key, value)
