"""`python -m stages <stage>`: data, validate, catalog, train, evaluate, drift (see dvc.yaml).

Runs with no services: the data stage generates a small series of versions locally, and every
other stage reads and writes plain files under data/, models/ and reports/.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from domain.layout import BUNDLE_DIR, MANIFEST, model_file  # noqa: E402
from domain.settings import ROOT, load_params  # noqa: E402

DATA = ROOT / "data"
GENERATED = DATA / "generated"
CATALOG = DATA / "catalog"
MODEL = ROOT / "models" / "current"
REPORTS = ROOT / "reports"


def _write(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def _versions() -> list[Path]:
    return [GENERATED / name for name in json.loads((GENERATED / "versions.json").read_text())]


def data(params: dict) -> None:
    """A first version and a drifted second one, from the deterministic generator."""
    import datagen

    shutil.rmtree(GENERATED, ignore_errors=True)
    versions = datagen.generate_series(GENERATED, scale=params["data"]["generator_scale"], seed=int(params["seed"]),
                                       scenarios=["base", "drift_behaviour"], mode="increment")
    _write(GENERATED / "versions.json", [Path(v).name for v in versions])  # type: ignore[arg-type]


def validate(params: dict) -> None:
    from quality.validation import validate as run_validation

    first = _versions()[0]
    manifest = json.loads((first / MANIFEST).read_text())
    result = run_validation(first, manifest, None, params["validation"])
    _write(REPORTS / "validation.json", {"version": first.name, **json.loads(result.to_json())})
    if not result.valid:
        raise SystemExit(f"{first.name} failed validation: {result.failed_checks}")


def catalog(params: dict) -> None:
    from ml.catalog import merge
    from ml.serving import build_bundle

    shutil.rmtree(CATALOG, ignore_errors=True)
    stats = merge(None, _versions()[0], CATALOG)
    build_bundle(CATALOG, CATALOG / BUNDLE_DIR)
    _write(REPORTS / "catalog.json", {"version": _versions()[0].name, "rows": stats})


def train(params: dict) -> None:
    from ml.train import train as run_training

    shutil.rmtree(MODEL, ignore_errors=True)
    result = run_training(CATALOG, MODEL, params["model"], int(params["seed"]))
    _write(REPORTS / "train_metrics.json", {"data_version": _versions()[0].name, "features_count": result.features_count,
                                            **result.metrics})


def evaluate(params: dict) -> None:
    from ml.evaluate import evaluate as run_evaluation

    _write(REPORTS / "evaluation.json", run_evaluation(model_file(MODEL), CATALOG, params["model"], int(params["seed"])))


def drift(params: dict) -> None:
    from quality.drift import evaluate_drift

    current = _versions()[1]
    result = evaluate_drift(CATALOG, current, params["drift"], REPORTS / "drift")
    _write(REPORTS / "drift.json", {"reference": _versions()[0].name, "current": current.name,
                                     **json.loads(result.to_json())})


STAGES = {stage.__name__: stage for stage in (data, validate, catalog, train, evaluate, drift)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stages", description=__doc__)
    parser.add_argument("stage", choices=sorted(STAGES))
    args = parser.parse_args()
    STAGES[args.stage](load_params())


if __name__ == "__main__":
    main()
