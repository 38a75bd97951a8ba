"""Scoring an offer's audience from a precomputed bundle (the catalog's state at its last day) and a model.

The bundle holds everything that does not depend on the offer; per request only the offer's brand
column, a few sparse products and one CatBoost pass over the candidates remain.

A merchant without a brand (or whose brand never appears in transactions) has no customers to exclude
and no brand to resemble: every known user is a candidate and the model ranks them by general
propensity (brand features missing, `brand_known` = 0).
"""
from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ml.features import (
    CATEGORICAL,
    EPOCH,
    FEATURE_NAMES,
    OPEN_END_DAY,
    OfferSpec,
    State,
    brand_column,
    encode_categoricals,
    load_history,
    non_customers,
    offer_features,
    state_at,
)
from ml.ground_truth import OPEN_END
from ml.model import LookalikeModel

REASONS = 5
SHAP_ROWS = 100        # reasons describe the head of the ranking: its first SHAP_ROWS users
MAX_TOP_N = 1000       # the contract's largest top_n: a cached ranking keeps this many users
CACHE_SIZE = 4096      # offers whose ranking is kept (about 12 KB each)


@dataclass(frozen=True)
class OfferRow:
    offer_id: int
    merchant_id: int
    brand_dk: int | None
    start_date: dt.date
    end_date: dt.date | None     # None: open-ended
    offer_text: str | None


@dataclass(frozen=True)
class Audience:
    users: list[tuple[int, float]]
    reasons: list[tuple[str, float]]
    candidates: int


def build_bundle(catalog: Path, out: Path) -> dict:
    """The catalog's state after its last day, saved for serving (no raw transactions needed later)."""
    history = load_history(Path(catalog))
    cut = history.max_day + 1
    state = state_at(history, cut)
    del history  # the raw rows (~1 GB at full scale) go before the derived matrices are built and saved
    state.save(Path(out))
    return {"users": state.n_users, "brands": int(len(state.brand_ids)), "cut": str(cut),
            "offers": int(state.offers.height), "merchants": int(state.merchants.height),
            "user_brand_pairs": int(state.counts.nnz)}


def _latest_rows(offers: pl.DataFrame) -> pl.DataFrame:
    """One row per (offer_id, merchant): the latest end date wins (open-ended counts as latest);
    remaining ties by start date, then text, so the choice is deterministic."""
    return (
        offers.sort(["offer_id", "merchant_id_offer", "end_day", "start_day", "offer_text"],
                    descending=[False, False, True, True, False], nulls_last=True)
        .unique(["offer_id", "merchant_id_offer"], keep="first", maintain_order=True)
    )


class Scorer:
    def __init__(self, bundle_dir: Path, model_path: Path, thread_count: int | None = None):
        self.state: State = State.load(Path(bundle_dir))
        self.model = LookalikeModel.load(Path(model_path))
        if self.model.feature_names != FEATURE_NAMES:
            raise ValueError(f"model {model_path} was trained on another feature set than this release computes")
        encode_categoricals(self.state, self.model.levels)
        self.state.derived()
        self.thread_count = thread_count or int(self.model.meta.get("thread_count", 4))
        rows = _latest_rows(self.state.offers)
        self._offers = {(int(r["offer_id"]), int(r["merchant_id_offer"])): r for r in rows.iter_rows(named=True)}
        merchants = self.state.merchants
        self._merchant_brand = dict(zip(merchants["merchant_id_offer"].to_list(), merchants["b"].to_list()))
        self._merchant_brand_dk = dict(zip(merchants["merchant_id_offer"].to_list(), merchants["brand_dk"].to_list()))
        self._cache: OrderedDict[tuple[int, int], Audience] = OrderedDict()  # (offer, merchant) -> ranking
        self._lock = threading.Lock()
        self._feature_names = self.model.feature_names
        self._categorical = {name: i for i, name in enumerate(self._feature_names) if name in CATEGORICAL}

    # --- lookups ---------------------------------------------------------------------------------------

    def merchant_known(self, merchant_id: int) -> bool:
        return int(merchant_id) in self._merchant_brand

    def offer(self, offer_id: int, merchant_id: int) -> OfferRow | None:
        row = self._offers.get((int(offer_id), int(merchant_id)))
        if row is None:
            return None
        end = row["end_date"]
        return OfferRow(offer_id=int(row["offer_id"]), merchant_id=int(row["merchant_id_offer"]),
                        brand_dk=None if row["brand_dk"] is None else int(row["brand_dk"]),
                        start_date=row["start_date"], end_date=None if end is None or end >= OPEN_END else end,
                        offer_text=row["offer_text"])

    # --- the audience ----------------------------------------------------------------------------------

    def audience(self, offer_id: int, merchant_id: int, top_n: int) -> Audience:
        """The offer's best top_n candidates. One ranking per offer is computed and kept (LRU), so
        any top_n of an offer already asked for is a slice of it."""
        key = (int(offer_id), int(merchant_id))
        with self._lock:
            ranking = self._cache.get(key)
            if ranking is not None:
                self._cache.move_to_end(key)
        if ranking is None:
            ranking = self._score(*key)
            with self._lock:
                self._cache[key] = ranking
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return Audience(users=ranking.users[: max(int(top_n), 0)], reasons=ranking.reasons,
                        candidates=ranking.candidates)

    def _score(self, offer_id: int, merchant_id: int) -> Audience:
        row = self._offers.get((offer_id, merchant_id))
        if row is None:
            raise LookupError(f"offer {offer_id} of merchant {merchant_id} is unknown")
        return self.score_offer(offer_id, merchant_id, row["start_date"], row["end_date"], row["offer_text"],
                                MAX_TOP_N)

    def score_offer(self, offer_id: int, merchant_id: int, start_date: dt.date, end_date: dt.date | None,
                    offer_text: str | None, top_n: int) -> Audience:
        """The audience of an offer given by its fields (benchmarks score offers the catalog never saw)."""
        known_brand = self._merchant_brand.get(merchant_id)
        brand = int(known_brand) if known_brand is not None else -1
        end_day = OPEN_END_DAY if end_date is None or end_date >= OPEN_END else (end_date - EPOCH).days
        spec = OfferSpec(brand=brand, start_day=(start_date - EPOCH).days, end_day=end_day, text=offer_text,
                         offer_id=offer_id)
        state = self.state
        pool = non_customers(state, brand, spec.start_day)
        users, first = brand_column(state, brand)
        converted = np.zeros(state.n_users, dtype=bool)
        window_end = min(spec.end_day, OPEN_END_DAY)
        converted[users[(first >= spec.start_day) & (first <= window_end)]] = True

        features = offer_features(state, spec, pool)
        raw = self.model.raw(features, self.thread_count)
        scores = self.model.probability(raw)
        # Already seen buying inside the window with no purchase before: certain new customers.
        scores = np.where(converted[pool], 1.0, np.minimum(scores, np.nextafter(1.0, 0.0)))
        user_ids = state.user_ids[pool]
        order = np.lexsort((user_ids, -scores))
        top = order[: max(int(top_n), 0)]
        audience = list(zip(user_ids[top].tolist(), np.round(scores[top], 6).tolist()))
        reasons = self._reasons(features[order[:SHAP_ROWS]], pool[order[:SHAP_ROWS]])
        return Audience(users=audience, reasons=reasons, candidates=int(len(pool)))

    def _reasons(self, features: np.ndarray, rows: np.ndarray) -> list[tuple[str, float]]:
        """Top features by mean |SHAP| over the audience, with their signed mean impact (log-odds)."""
        if len(features) == 0:
            return []
        shap = self.model.shap(features, self.thread_count)
        strength = np.abs(shap).mean(axis=0)
        impact = shap.mean(axis=0)
        top = np.lexsort((np.arange(len(strength)), -strength))[:REASONS]
        reasons = []
        for j in top:
            if strength[j] <= 0:
                continue
            reasons.append((self._reason_name(j, rows), float(round(impact[j], 6))))
        return reasons

    def _reason_name(self, feature: int, rows: np.ndarray) -> str:
        name = self._feature_names[feature]
        if name not in self._categorical:
            return name
        values = self.state.user_raw[name].gather(rows).drop_nulls()
        if values.len() == 0:
            return f"{name}=unknown"
        counts = values.value_counts().sort(["count", name], descending=[True, False])
        return f"{name}={counts[name][0]}"
