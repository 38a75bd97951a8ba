"""The ml core on the project's generator (tiny scale): the model beats random and popularity on the
generator's held-out offers (next month's offers, their future transactions never in the catalog)."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

datagen = pytest.importorskip("datagen")

from ml.catalog import merge, read_table  # noqa: E402
from ml.evaluate import average_precision_at_k  # noqa: E402
from ml.features import USER_NUMERIC  # noqa: E402
from ml.ground_truth import offers_ground_truth  # noqa: E402
from ml.serving import Scorer, build_bundle  # noqa: E402
from ml.train import train  # noqa: E402

PARAMS = {"iterations": 150, "learning_rate": 0.1, "depth": 5, "thread_count": 2, "cuts_per_brand": 3,
          "horizon_days": 30, "negatives_per_positive": 10, "max_brands": 60, "eval_offers": 30}


def test_model_beats_baselines_on_generated_holdout_offers(tmp_path):
    version = datagen.generate_series(tmp_path / "gen", scale="tiny", seed=42, scenarios=["base"], mode="full")[0]
    merge(None, version, tmp_path / "catalog")
    build_bundle(tmp_path / "catalog", tmp_path / "bundle")
    result = train(tmp_path / "catalog", tmp_path / "model", PARAMS, seed=42)
    scorer = Scorer(tmp_path / "bundle", result.model_path)
    offers = pl.read_parquet(version / "_holdout" / "offer.parquet").unique(["offer_id", "merchant_id_offer"])
    past = read_table(tmp_path / "catalog", "transaction", ["user_id", "brand_dk", "event_date"])
    future = pl.read_parquet(version / "_holdout" / "transaction.parquet").select(past.columns)
    truth = offers_ground_truth(pl.concat([past, future]), offers, read_table(tmp_path / "catalog", "merchant"))
    rng = np.random.default_rng(0)
    activity = scorer.state.user_numeric[:, USER_NUMERIC.index("tx_90d")]
    model_ap, random_ap, popular_ap = [], [], []
    for row in offers.sort("offer_id", "merchant_id_offer").iter_rows(named=True):
        relevant = set(truth.filter((pl.col("offer_id") == row["offer_id"])
                                    & (pl.col("merchant_id_offer") == row["merchant_id_offer"]))["user_id"].to_list())
        if not relevant or not scorer.merchant_known(row["merchant_id_offer"]):
            continue
        audience = scorer.score_offer(row["offer_id"], row["merchant_id_offer"], row["start_date"], row["end_date"],
                                      row["offer_text"], 100)
        model_ap.append(average_precision_at_k([u for u, _ in audience.users], relevant))
        candidates = [u for u, _ in scorer.score_offer(row["offer_id"], row["merchant_id_offer"], row["start_date"],
                                                       row["end_date"], row["offer_text"], 10**6).users]
        random_ap.append(average_precision_at_k(list(rng.permutation(candidates)), relevant))
        index = np.searchsorted(scorer.state.user_ids, candidates)
        order = np.lexsort((np.asarray(candidates), -activity[index]))
        popular_ap.append(average_precision_at_k([candidates[i] for i in order], relevant))
    assert len(model_ap) >= 5
    assert np.mean(model_ap) > np.mean(random_ap)
    assert np.mean(model_ap) > np.mean(popular_ap)
