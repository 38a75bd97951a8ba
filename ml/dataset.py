"""Learning problems cut out of the catalog's history: queries (an offer at a cut day) with their ground truth.

Time split: the hold-out cut h = last day + 1 - horizon. Hold-out queries start at or after h; every
training query's window ends before h, so no label the model learns from overlaps the hold-out.
Queries are (a) pseudo-offers "brand b, window [T, T+horizon)" for the brands with most new customers
and (b) real offers whose window the data covers, with their own duration, text and history.
Ground truth always comes from `ml.ground_truth.offers_ground_truth` (one definition).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from ml.features import History, OfferSpec, date_of
from ml.ground_truth import offers_ground_truth

WARMUP_DAYS = 60


@dataclass(frozen=True)
class Query:
    key: int            # synthetic id, unique within a plan
    spec: OfferSpec
    cut: int            # the state the features come from (the offer's start)
    real: bool
    positives: np.ndarray  # user indices of the ground truth


@dataclass
class Plan:
    holdout_cut: int
    train_cuts: list[int]
    train: list[Query]
    holdout: list[Query]

    @property
    def validation_cut(self) -> int | None:
        return max((q.cut for q in self.train), default=None)


def _brand_texts(history: History) -> dict[int, str]:
    """A brand's first offer text (by offer_id): what a pseudo-offer of the brand says."""
    # history.offers is sorted by (offer_id, merchant, dates, text): a repeated offer_id keeps one text.
    rows = history.offers.filter(pl.col("b") >= 0).unique("b", keep="first", maintain_order=True)
    return dict(zip(rows["b"].to_list(), rows["offer_text"].to_list()))


def _ground_truth(history: History, queries: list[tuple[OfferSpec, int, bool]]) -> list[Query]:
    if not queries:
        return []
    keys = np.arange(len(queries))
    brand_dk = [int(history.brand_ids[spec.brand]) for spec, _, _ in queries]
    offers = pl.DataFrame({
        "offer_id": keys, "merchant_id_offer": keys,
        "start_date": [date_of(spec.start_day) for spec, _, _ in queries],
        "end_date": [date_of(min(spec.end_day, history.max_day)) for spec, _, _ in queries],
    })
    merchants = pl.DataFrame({"merchant_id_offer": keys, "brand_dk": brand_dk})
    truth = offers_ground_truth(history.transactions, offers, merchants)
    users = pl.DataFrame({"user_id": history.user_ids}).with_row_index("u")
    truth = truth.join(users, on="user_id", how="inner")
    grouped = {int(k): np.sort(g["u"].to_numpy().astype(np.int32))
               for (k,), g in truth.group_by(["offer_id"], maintain_order=True)}
    empty = np.zeros(0, dtype=np.int32)
    return [Query(key=int(k), spec=spec, cut=cut, real=real, positives=grouped.get(int(k), empty))
            for k, (spec, cut, real) in zip(keys, queries)]


def _new_customer_counts(history: History, start: int, end: int) -> pl.DataFrame:
    """Per brand, users whose first purchase falls in [start, end] (for choosing brands only)."""
    first = history.first_purchases()
    return (first.filter(pl.col("first").is_between(start, end)).group_by("b").len()
            .sort(["len", "b"], descending=[True, False]))


def _real_offers(history: History, lo: int, hi: int, end_limit: int) -> pl.DataFrame:
    """Real offers with a brand, starting in [lo, hi], window clipped to `end_limit`; one row per
    (offer_id, merchant) with the latest end (as serving picks it)."""
    return (
        history.offers.filter((pl.col("b") >= 0) & pl.col("start_day").is_between(lo, hi))
        .sort("offer_id", "merchant_id_offer", "end_day", descending=[False, False, True])
        .unique(["offer_id", "merchant_id_offer"], keep="first")
        .with_columns(pl.min_horizontal("end_day", pl.lit(end_limit)).alias("clipped_end"))
        .sort("offer_id", "merchant_id_offer")
    )


def make_plan(history: History, params: dict) -> Plan:
    horizon = int(params.get("horizon_days", 30))
    n_cuts = int(params.get("cuts_per_brand", 3))
    max_brands = int(params.get("max_brands", 400))
    eval_offers = int(params.get("eval_offers", 60))
    max_real = int(params.get("max_real_offers", 300))
    max_offer_cuts = int(params.get("max_offer_cuts", 4))
    min_positives = int(params.get("min_positives", 2))
    texts = _brand_texts(history)

    holdout_cut = history.max_day + 1 - horizon
    earliest = history.min_day + min(WARMUP_DAYS, max((history.max_day - history.min_day) // 4, 7))
    train_cuts = [holdout_cut - horizon * k for k in range(1, n_cuts + 1) if holdout_cut - horizon * k >= earliest]
    train_cuts = sorted(train_cuts)

    # Pseudo-offers for training: brands with most new customers over the training windows.
    wanted: list[tuple[OfferSpec, int, bool]] = []
    if train_cuts:
        totals = _new_customer_counts(history, train_cuts[0], holdout_cut - 1)
        brands = totals.filter(pl.col("len") >= min_positives)["b"].head(max_brands).to_list()
        for cut in train_cuts:
            for b in brands:
                wanted.append((OfferSpec(brand=int(b), start_day=cut, end_day=cut + horizon - 1,
                                         text=texts.get(int(b))), cut, False))
    # Real offers whose whole window lies before the hold-out.
    real = _real_offers(history, earliest, holdout_cut - 1, history.max_day).filter(
        pl.col("clipped_end") < holdout_cut)
    real = _limit_cuts(real, max_offer_cuts)
    for row in real.head(max_real).iter_rows(named=True):
        wanted.append((OfferSpec(brand=int(row["b"]), start_day=int(row["start_day"]), end_day=int(row["end_day"]),
                                 text=row["offer_text"], offer_id=int(row["offer_id"])), int(row["start_day"]), True))
    train = [q for q in _ground_truth(history, wanted) if len(q.positives) >= (1 if q.real else min_positives)]

    # Hold-out: real offers starting in the hold-out period, then pseudo-offers of the busiest brands.
    held: list[tuple[OfferSpec, int, bool]] = []
    real_held = _limit_cuts(_real_offers(history, holdout_cut, history.max_day, history.max_day), max_offer_cuts)
    for row in real_held.iter_rows(named=True):
        held.append((OfferSpec(brand=int(row["b"]), start_day=int(row["start_day"]), end_day=int(row["end_day"]),
                               text=row["offer_text"], offer_id=int(row["offer_id"])), int(row["start_day"]), True))
    counts = _new_customer_counts(history, holdout_cut, history.max_day)
    for b in counts["b"].head(eval_offers).to_list():
        held.append((OfferSpec(brand=int(b), start_day=holdout_cut, end_day=history.max_day, text=texts.get(int(b))),
                     holdout_cut, False))
    holdout = [q for q in _ground_truth(history, held) if len(q.positives) > 0]
    real_part = sorted((q for q in holdout if q.real), key=lambda q: (-len(q.positives), q.key))[: eval_offers // 2]
    pseudo_part = [q for q in holdout if not q.real][: eval_offers - len(real_part)]
    return Plan(holdout_cut=holdout_cut, train_cuts=train_cuts, train=train,
                holdout=sorted(real_part + pseudo_part, key=lambda q: q.key))


def _limit_cuts(offers: pl.DataFrame, max_cuts: int) -> pl.DataFrame:
    """Each distinct start day costs a state: keep the start days that carry the most offers."""
    if offers.height == 0:
        return offers
    days = offers.group_by("start_day").len().sort(["len", "start_day"], descending=[True, False]).head(max_cuts)
    return offers.filter(pl.col("start_day").is_in(days["start_day"].to_list()))
