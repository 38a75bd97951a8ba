"""One MLflow run per training, also when an attempt was stopped and the version is processed again."""
import dataclasses

import mlflow
from mlflow.tracking import MlflowClient

from adapters.tracking import Tracker
from domain.settings import settings


def _tracker(tmp_path) -> Tracker:
    config = dataclasses.replace(settings(), deployment="unit", mlflow_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    return Tracker(config)


def _log(tracker: Tracker, model_version: str = "1.0") -> str:
    return tracker.log_training(data_version="v1", model_version=model_version, params={"depth": "6"},
                                metrics={"map_at_100": 0.25}, tags={}, artifacts=[])


def _runs(tracker: Tracker):
    experiment = mlflow.get_experiment_by_name(tracker.experiment_name)
    return MlflowClient().search_runs([experiment.experiment_id])


def test_a_second_attempt_of_the_same_training_returns_the_recorded_run(tmp_path):
    tracker = _tracker(tmp_path)
    first = _log(tracker)
    assert _log(tracker) == first
    assert [run.info.run_id for run in _runs(tracker)] == [first]
    # Another model version of the same data is another run.
    assert _log(tracker, model_version="2.0") != first
    assert len(_runs(tracker)) == 2


def test_a_run_cut_short_is_replaced(tmp_path):
    tracker = _tracker(tmp_path)
    client = MlflowClient()
    experiment = mlflow.get_experiment_by_name(tracker.experiment_name) or mlflow.get_experiment(
        mlflow.create_experiment(tracker.experiment_name))
    cut_short = client.create_run(experiment.experiment_id, tags={"data_version": "v1", "model_version": "1.0"})
    run_id = _log(tracker)
    assert run_id != cut_short.info.run_id
    runs = _runs(tracker)
    assert [run.info.run_id for run in runs] == [run_id]
    assert runs[0].data.metrics["map_at_100"] == 0.25
