"""Month-by-month simulation of the world: transactions, receipts, offers and how clients meet them."""
from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from datagen.world import AMOUNT_BUCKETS, CATEGORY_NAMES, K, Behaviour, World, month_start, purchase_probability

OFFER_DURATIONS = np.array([0, 6, 13, 27, 29, 30, 44, 59, 89, 179])
OFFER_DURATION_P = np.array([0.03, 0.05, 0.1, 0.17, 0.3, 0.2, 0.05, 0.05, 0.03, 0.02])
OPEN_END = dt.date(5999, 1, 1)
SEEN_SHARE = 0.03      # share of clients an offer is shown to
OFFER_LIFT = 0.25      # chance that a client who saw the offer tries the brand during the window


@dataclass
class Month:
    transactions: pl.DataFrame
    receipts: pl.DataFrame


def _sample_brands(world: World, categories: np.ndarray, tiers: np.ndarray, era: int) -> np.ndarray:
    """A brand of the given category and tier for each transaction, by popularity among active brands."""
    rng = world.rng
    out = np.empty(len(categories), dtype=np.int64)
    active = world.brand_since <= era
    for category in range(K):
        for tier in range(3):
            mask = (categories == category) & (tiers == tier)
            if not mask.any():
                continue
            pool = np.flatnonzero(active & (world.brand_category == category) & (world.brand_tier == tier))
            if len(pool) == 0:
                pool = np.flatnonzero(active & (world.brand_category == category))
            if len(pool) == 0:
                pool = np.flatnonzero(active)
            weights = np.cumsum(world.brand_pop[pool])
            draws = rng.random(mask.sum()) * weights[-1]
            out[mask] = pool[np.searchsorted(weights, draws)]
    return out


def simulate_month(world: World, month: int, first: dt.date, behaviour: Behaviour, boosts: list[dict],
                   next_tx_id: int, era: int) -> Month:
    """One month of transactions (plus offer-driven trials) and receipts for the active clients."""
    rng = world.rng
    start = month_start(first, month)
    days = calendar.monthrange(start.year, start.month)[1]
    active = np.flatnonzero(world.user_since <= era)
    rate = world.rate[active] * behaviour.frequency
    if behaviour.segment_activity is not None:
        rate = rate * behaviour.segment_activity[world.taste[active].argmax(axis=1)]
    if behaviour.tier_activity is not None:
        rate = rate * behaviour.tier_activity[world.tier[active]]
    counts = rng.poisson(rate)
    users = np.repeat(active, counts)
    n = len(users)
    cumulative = np.cumsum(world.taste[users], axis=1)
    categories = (cumulative < rng.random(n)[:, None] * cumulative[:, -1:]).sum(axis=1)
    own_tier = rng.random(n) < 0.85
    tiers = np.where(own_tier, world.tier[users], rng.integers(0, 3, n))
    brands = _sample_brands(world, categories, tiers, era)
    day_weights = np.ones(days)
    weekend = np.array([(start + dt.timedelta(d)).weekday() >= 5 for d in range(days)])
    day_weights[weekend] += behaviour.weekend_bias
    day_weights /= day_weights.sum()
    dates = np.datetime64(start, "D") + rng.choice(days, n, p=day_weights)

    # Offers: clients who saw an offer may try its brand inside the window.
    extra_users, extra_brands, extra_dates = [users], [brands], [dates]
    for boost in boosts:
        brand, seen_users = boost["brand"], boost["seen"]
        window_start, window_end = boost["start"], boost["end"]
        lo, hi = max(window_start, start), min(window_end, start + dt.timedelta(days - 1))
        if lo > hi or len(seen_users) == 0:
            continue
        tries = seen_users[rng.random(len(seen_users)) < OFFER_LIFT * (hi - lo).days / 30 + 0.02]
        span = (hi - lo).days + 1
        extra_users.append(tries)
        extra_brands.append(np.full(len(tries), brand))
        extra_dates.append(np.datetime64(lo, "D") + rng.integers(0, span, len(tries)))
    users, brands, dates = np.concatenate(extra_users), np.concatenate(extra_brands), np.concatenate(extra_dates)
    n = len(users)
    amount = np.clip(world.brand_tier[brands] * 2 + rng.integers(0, 2, n) + rng.integers(-1, 2, n)
                     + (rng.random(n) < behaviour.tier_shift), 0, len(AMOUNT_BUCKETS) - 1)
    online_p = np.clip(0.5 * world.online[users] + 0.5 * world.brand_online[brands] + behaviour.online_shift, 0, 1)
    order = np.lexsort((users, dates))
    transactions = pl.DataFrame({
        "transaction_id": [f"{next_tx_id + i}" for i in range(n)],
        "user_id": world.user_ids[users[order]],
        "merchant_id_tx": world.brand_ids[brands[order]] // 7 + 1_000_000,
        "event_date": pl.Series(dates[order], dtype=pl.Date),
        "amount_bucket": np.array(AMOUNT_BUCKETS)[amount[order]],
        "online_transaction_flg": np.where(rng.random(n) < online_p[order], "Y", "N"),
        "brand_dk": world.brand_ids[brands[order]],
    })
    return Month(transactions=transactions, receipts=_receipts(world, active, start, days, behaviour))


def _receipts(world: World, active: np.ndarray, start: dt.date, days: int, behaviour: Behaviour) -> pl.DataFrame:
    """Itemised receipts: a couple per active client per month, category by taste."""
    rng = world.rng
    counts = rng.poisson(1.5, len(active))
    users = np.repeat(active, counts)
    n = len(users)
    weights = world.taste[users]
    if behaviour.receipt_mix is not None:
        weights = 0.3 * weights + 0.7 * behaviour.receipt_mix[None, :]
    cumulative = np.cumsum(weights, axis=1)
    category = (cumulative < rng.random(n)[:, None] * cumulative[:, -1:]).sum(axis=1)
    cost = np.clip(world.tier[users] + rng.integers(0, 3, n) + (rng.random(n) < behaviour.receipt_cost_shift) * 2,
                   0, len(AMOUNT_BUCKETS) - 1)
    return pl.DataFrame({
        "user_id": world.user_ids[users],
        "date_operated": pl.Series(np.datetime64(start, "D") + rng.integers(0, days, n), dtype=pl.Date),
        "category_name": np.array(CATEGORY_NAMES)[category],
        "items_count": rng.integers(1, 12, n).astype(float),
        "items_cost": np.array(AMOUNT_BUCKETS)[cost],
    })


def make_offers(world: World, month: int, first: dt.date, count: int, next_offer_id: int, texts: list[str],
                previous: pl.DataFrame | None, era: int) -> pl.DataFrame:
    """Offers starting in the month: on the 1st or 3rd mostly; a few repeat an earlier offer_id."""
    rng = world.rng
    start = month_start(first, month)
    merchants = world.merchants.filter(pl.col("brand_dk").is_not_null() & (pl.col("since") <= era)
                                       & (pl.col("merchant_status") == "ACT"))
    picked = merchants.sample(n=min(count, merchants.height), seed=int(rng.integers(1 << 30)))
    n = picked.height
    start_day = rng.choice([0, 2, 14], n, p=[0.45, 0.45, 0.1])
    starts = [start + dt.timedelta(int(d)) for d in start_day]
    durations = rng.choice(OFFER_DURATIONS, n, p=OFFER_DURATION_P)
    ends = [OPEN_END if rng.random() < 0.01 else s + dt.timedelta(int(d)) for s, d in zip(starts, durations)]
    offers = pl.DataFrame({
        "offer_id": np.arange(next_offer_id, next_offer_id + n),
        "merchant_id_offer": picked["merchant_id_offer"],
        "start_date": pl.Series(starts, dtype=pl.Date),
        "end_date": pl.Series(ends, dtype=pl.Date),
        "offer_text": [texts[i] for i in rng.integers(0, len(texts), n)],
    })
    if previous is not None and previous.height:
        # offer_id is not unique in the real data: a repeat with another end date or text.
        repeats = previous.sample(n=max(1, previous.height // 20), seed=int(rng.integers(1 << 30)))
        repeats = repeats.with_columns((pl.col("end_date") + pl.duration(days=7)).alias("end_date"))
        offers = pl.concat([offers, repeats])
    return offers


def offer_interactions(world: World, offers: pl.DataFrame, era: int) -> tuple[list, pl.DataFrame, pl.DataFrame]:
    """Who saw each offer (clients with some affinity to its brand), who activated it.
    Returns the boosts for simulation plus the offer_seens and offer_activation tables."""
    rng = world.rng
    brand_index = {int(b): i for i, b in enumerate(world.brand_ids)}
    merchant_brand = dict(zip(world.merchants["merchant_id_offer"].to_list(), world.merchants["brand_dk"].to_list()))
    active = np.flatnonzero(world.user_since <= era)
    boosts, seen_parts, activation_parts = [], [], []
    for offer in offers.unique(["offer_id", "merchant_id_offer"], maintain_order=True).iter_rows(named=True):
        brand = brand_index[int(merchant_brand[offer["merchant_id_offer"]])]
        affinity = purchase_probability(world, active, brand) + 1e-4
        size = max(3, int(len(active) * SEEN_SHARE))
        seen = rng.choice(active, size=min(size, len(active)), replace=False, p=affinity / affinity.sum())
        end = offer["end_date"] if offer["end_date"] < dt.date(2100, 1, 1) else offer["start_date"] + dt.timedelta(60)
        boosts.append({"offer_id": offer["offer_id"], "brand": brand, "seen": seen, "start": offer["start_date"],
                       "end": end})
        seen_parts.append(pl.DataFrame({"user_id": world.user_ids[seen], "offer_id": offer["offer_id"],
                                        "start_date": offer["start_date"], "end_date": offer["end_date"]}))
        activated = seen[rng.random(len(seen)) < 0.3]
        span = max(1, (end - offer["start_date"]).days + 1)
        activation_parts.append(pl.DataFrame({
            "user_id": world.user_ids[activated], "offer_id": offer["offer_id"],
            "activation_date": pl.Series(np.datetime64(offer["start_date"], "D") + rng.integers(0, span, len(activated)),
                                         dtype=pl.Date)}))
    seens = pl.concat(seen_parts) if seen_parts else None
    activations = pl.concat(activation_parts) if activation_parts else None
    return boosts, seens, activations
