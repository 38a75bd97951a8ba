"""Drift scores of generated versions against the catalog before them: same-distribution versions
with new entities on one side, each kind of drift on the other, at several scales and both modes.

    python bench/drift_calibration.py --scales tiny,small
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: the repo root is the package root

import datagen  # noqa: E402
from domain.settings import load_params  # noqa: E402
from ml.catalog import merge  # noqa: E402
from quality.drift import evaluate_drift  # noqa: E402

KINDS = ["same", "drift_clients", "drift_behaviour", "drift_receipts"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scales", default="tiny,small")
    parser.add_argument("--modes", default="increment,full")
    parser.add_argument("--seeds", default="1,2")
    args = parser.parse_args()
    params = load_params()["drift"]
    rows = []
    for scale in args.scales.split(","):
        for mode in args.modes.split(","):
            for seed in map(int, args.seeds.split(",")):
                for kind in KINDS:
                    work = Path(tempfile.mkdtemp())
                    try:
                        base, candidate = datagen.generate_series(work / "gen", scale, seed, ["base", kind], mode)
                        merge(None, base, work / "catalog")
                        result = evaluate_drift(work / "catalog", candidate, params, work / "report")
                        rows.append({"scale": scale, "mode": mode, "seed": seed, "kind": kind,
                                     "score": result.drift_score, "detected": result.drift_detected})
                        print(json.dumps(rows[-1]), flush=True)
                    finally:
                        shutil.rmtree(work, ignore_errors=True)
    same = [r["score"] for r in rows if r["kind"] == "same"]
    drift = [r["score"] for r in rows if r["kind"] != "same"]
    print(f"\nthreshold {params['threshold']}: same-distribution max {max(same):.3f}, drift min {min(drift):.3f}, "
          f"margin below {params['threshold'] - max(same):.3f}, above {min(drift) - params['threshold']:.3f}")
    wrong = [r for r in rows if r["detected"] != (r["kind"] != "same")]
    print(f"misclassified: {len(wrong)} of {len(rows)}")


if __name__ == "__main__":
    main()
