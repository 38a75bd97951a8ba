"""The trained model as files: CatBoost .cbm plus model.json (feature names, categorical levels, calibration)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from catboost import CatBoost, Pool

from domain.layout import model_file

META_FILE = "model.json"  # beside the model file (domain.layout.model_file)


@dataclass
class LookalikeModel:
    booster: CatBoost
    meta: dict

    @property
    def feature_names(self) -> list[str]:
        return list(self.meta["feature_names"])

    @property
    def levels(self) -> dict[str, list[str]]:
        return self.meta["categorical_levels"]

    def raw(self, features: np.ndarray, thread_count: int | None = None) -> np.ndarray:
        if len(features) == 0:
            return np.zeros(0)
        return self.booster.predict(features, prediction_type="RawFormulaVal",
                                    thread_count=thread_count or int(self.meta.get("thread_count", 4)))

    def probability(self, raw: np.ndarray) -> np.ndarray:
        """Platt-calibrated probability that the user becomes a new customer within the offer window."""
        scale, shift = self.meta["calibration"]
        return 1.0 / (1.0 + np.exp(-(scale * np.asarray(raw, dtype=np.float64) + shift)))

    def shap(self, features: np.ndarray, thread_count: int | None = None) -> np.ndarray:
        """Per-row SHAP values (rows x features) on the raw scale; the approximate algorithm keeps a
        100-user audience within a few milliseconds."""
        values = self.booster.get_feature_importance(
            Pool(features, feature_names=self.feature_names), type="ShapValues", shap_calc_type="Approximate",
            thread_count=thread_count or int(self.meta.get("thread_count", 4)))
        return values[:, :-1]

    def save(self, out: Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        path = model_file(out)
        self.booster.save_model(str(path), format="cbm")
        (out / META_FILE).write_text(json.dumps(self.meta, indent=2, sort_keys=True, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, model_path: Path) -> LookalikeModel:
        model_path = Path(model_path)
        booster = CatBoost()
        booster.load_model(str(model_path), format="cbm")
        meta = json.loads((model_path.parent / META_FILE).read_text())
        return cls(booster=booster, meta=meta)
