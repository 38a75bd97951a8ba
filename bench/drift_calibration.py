"""Drift scores of generated versions against the catalog before them: same-distribution versions
with new entities on one side, each kind of drift on the other, at several scales and both modes;
prints the table, the margin on both sides of params.yaml's drift.threshold, and the misclassified.

    python bench/drift_calibration.py --scales tiny,small --modes increment,full --seeds 1,2
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

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
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    params = load_params()["drift"]
    threshold = float(params["threshold"])
    rows = []
    print(f"{'scale':6} {'mode':9} {'seed':>4} {'kind':16} {'score':>6} {'detected':8} {'secs':>5}  drifted features")
    for scale in args.scales.split(","):
        for mode in args.modes.split(","):
            for seed in map(int, args.seeds.split(",")):
                for kind in args.kinds.split(","):
                    work = Path(tempfile.mkdtemp())
                    try:
                        base, candidate = datagen.generate_series(work / "gen", scale, seed, ["base", kind], mode)
                        merge(None, base, work / "catalog")
                        started = time.perf_counter()
                        result = evaluate_drift(work / "catalog", candidate, params, work / "report")
                        seconds = time.perf_counter() - started
                    finally:
                        shutil.rmtree(work, ignore_errors=True)
                    rows.append({"scale": scale, "mode": mode, "seed": seed, "kind": kind,
                                 "score": result.drift_score, "detected": result.drift_detected})
                    drifted = ", ".join(f"{f['feature']}={f['score']:.2f}" for f in result.features if f["drifted"])
                    print(f"{scale:6} {mode:9} {seed:>4} {kind:16} {result.drift_score:6.3f} "
                          f"{str(result.drift_detected):8} {seconds:5.1f}  {drifted}", flush=True)
    same = [r["score"] for r in rows if r["kind"] == "same"]
    drift = [r["score"] for r in rows if r["kind"] != "same"]
    print()
    for kind in args.kinds.split(","):
        scores = [r["score"] for r in rows if r["kind"] == kind]
        print(f"{kind:16} min {min(scores):.3f}  max {max(scores):.3f}  (n={len(scores)})")
    if same and drift:
        print(f"threshold {threshold}: same-distribution max {max(same):.3f} (margin {threshold - max(same):.3f}); "
              f"drift min {min(drift):.3f} (margin {min(drift) - threshold:.3f})")
    wrong = [r for r in rows if r["detected"] != (r["kind"] != "same")]
    print(f"misclassified: {len(wrong)} of {len(rows)}", *wrong, sep="\n  ")


if __name__ == "__main__":
    main()
