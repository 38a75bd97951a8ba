"""A small synthetic catalog with planted look-alike structure, for the ml unit tests.

Users have a taste vector tied to their segment; brands have a position in the same space and a
popularity. Every purchase either repeats a brand the user already has or adopts a new one drawn by
taste, so first purchases (the ground truth) are predictable from history, segment and co-purchases.
Used until (or besides) the project's `datagen` package.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

from domain.tables import TABLES

START = dt.date(2024, 1, 1)


def _typed(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    schema = TABLES[table].columns
    return frame.select(pl.col(c).cast(t) for c, t in schema.items())


def make_snapshot(out: Path, users: int = 1200, brands: int = 50, days: int = 300, seed: int = 7) -> Path:
    rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_seg = 6
    seg_taste = rng.normal(size=(n_seg, 4)) * 1.5
    segment = rng.integers(0, n_seg, size=users)
    taste = seg_taste[segment] + rng.normal(size=(users, 4)) * 0.6
    brand_pos = rng.normal(size=(brands, 4))
    brand_pop = rng.normal(size=brands) * 0.7
    brand_online = rng.uniform(0, 1, size=brands)
    user_online = rng.uniform(0, 1, size=users)
    rate = rng.gamma(2.0, 0.25, size=users)  # purchases per day
    user_ids = 50001 + np.arange(users)
    brand_ids = 400000 + np.arange(brands) * 7

    rows_u, rows_b, rows_d = [], [], []
    counts = rng.poisson(rate * days)
    for u in np.flatnonzero(counts):  # a fixture: one vectorised draw per user
        n = int(counts[u])
        affinity = taste[u] @ brand_pos.T / 2 + brand_pop
        prob = np.exp(affinity - affinity.max())
        tx_days = np.sort(rng.integers(0, days, size=n))
        # Each purchase adopts a brand by taste (25%) or repeats one adopted before.
        adopt = rng.random(n) < 0.25
        adopt[0] = True
        drawn = rng.choice(brands, size=n, p=prob / prob.sum())
        adopted = drawn[adopt]
        before = np.cumsum(adopt)
        repeat = adopted[(rng.random(n) * before).astype(np.int64)]
        rows_u.append(np.full(n, u))
        rows_b.append(np.where(adopt, drawn, repeat))
        rows_d.append(tx_days)
    tu, tb, td = np.concatenate(rows_u), np.concatenate(rows_b), np.concatenate(rows_d)
    amounts = np.array(["0-100", "100-500", "500-1k", "1k-5k", "5k-10k", "10k+"])
    online = rng.random(len(tu)) < (user_online[tu] + brand_online[tb]) / 2
    transactions = pl.DataFrame({
        "transaction_id": [f"t{i:07d}" for i in range(len(tu))],
        "user_id": user_ids[tu], "merchant_id_tx": 9000 + tb,
        "event_date": [START + dt.timedelta(days=int(d)) for d in td],
        "amount_bucket": amounts[rng.integers(0, len(amounts), size=len(tu))],
        "online_transaction_flg": np.where(online, "Y", "N"), "brand_dk": brand_ids[tb],
    })
    people = pl.DataFrame({
        "user_id": user_ids, "age_bucket": (20 + 5 * ((segment + rng.integers(0, 3, users)) % 8)).astype(str),
        "gender_cd": np.where(rng.random(users) < 0.5, "M", "F"),
        "region": np.array(["МОСКВА", "ТВЕРСКАЯ ОБЛ", "", "КАЗАНЬ"])[rng.integers(0, 4, users)],
        "last_activity_day": ["2024-10-01"] * users,
    })
    segments = pl.DataFrame({
        "user_id": user_ids, "segment": [f"t_{s + 1} ({10 * (s + 1)})" for s in segment],
        "region_size": np.array(["msk", "urban", "town", "rural"])[rng.integers(0, 4, users)],
        "auto": rng.integers(0, 2, users).astype(float), "traveler": rng.integers(0, 2, users).astype(float),
        "entrepreneur": rng.integers(0, 2, users).astype(float),
        "vip_status": np.where(rng.random(users) < 0.1, "UPPERMASS", "not_vip"),
    })
    # Merchants: one per brand, a second for a few brands, and one merchant without a brand.
    m_brand = list(brand_ids) + list(brand_ids[:5]) + [None]
    merchants = pl.DataFrame({"merchant_id_offer": np.arange(1, len(m_brand) + 1), "merchant_status": "ACT",
                              "brand_dk": pl.Series(m_brand, dtype=pl.Int64)})
    # Offers over the last 120 days, different windows and texts; offer 1 appears twice (two ends).
    offer_rows = []
    for i in range(len(m_brand)):
        start = START + dt.timedelta(days=int(days - 120 + rng.integers(0, 90)))
        end = start + dt.timedelta(days=int(rng.integers(7, 60)))
        offer_rows.append((i + 1, i + 1, start, end, f"магазин номер {i} доставка" if i % 3 == 0 else "сайт не указан"))
    offer_rows.append((1, 1, offer_rows[0][2], offer_rows[0][3] + dt.timedelta(days=10), "магазин номер 0 повтор"))
    offer_rows.append((len(m_brand) + 1, 1, offer_rows[0][2], None, "второе предложение того же мерчанта"))
    offers = pl.DataFrame(offer_rows, schema=["offer_id", "merchant_id_offer", "start_date", "end_date", "offer_text"],
                          orient="row")
    seen_u = rng.integers(0, users, size=3000)
    seen_o = rng.integers(1, len(m_brand) + 1, size=3000)
    seens = pl.DataFrame({"user_id": user_ids[seen_u], "offer_id": seen_o,
                          "start_date": [START + dt.timedelta(days=int(d)) for d in rng.integers(0, days, 3000)],
                          "end_date": [START + dt.timedelta(days=days)] * 3000})
    act = seens.sample(fraction=0.3, seed=seed).select(
        "user_id", "offer_id", pl.col("start_date").alias("activation_date"))
    reward = act.sample(fraction=0.5, seed=seed).select(
        "user_id", "offer_id", pl.col("activation_date").alias("event_date"), pl.lit(0.0).alias("reward_amt"))
    reward = pl.concat([reward, reward.head(20)])  # exact duplicates, as in the real file
    cats = np.array(["продукты", "кафе", "одежда", "электроника", "аптека"])
    n_rec = users * 4
    rec_u = rng.integers(0, users, size=n_rec)
    receipts = pl.DataFrame({
        "user_id": user_ids[rec_u],
        "date_operated": [START + dt.timedelta(days=int(d)) for d in rng.integers(0, days, n_rec)],
        "category_name": cats[(segment[rec_u] + rng.integers(0, 2, n_rec)) % len(cats)],
        "items_count": rng.integers(1, 10, n_rec).astype(float),
        "items_cost": amounts[rng.integers(0, 4, n_rec)],
    })
    accounts = pl.DataFrame({"user_id": user_ids[rng.integers(0, users, users)], "product_cd": "card",
                             "open_month": "2023-01", "close_month": None, "account_status_cd": "OPEN"})
    frames = {"transaction": transactions, "people": people, "segments": segments, "merchant": merchants,
              "offer": offers, "offer_seens": seens, "offer_activation": act, "offer_reward": reward,
              "receipts": receipts, "financial_account": accounts}
    for table, frame in frames.items():
        _typed(table, frame).write_parquet(out / f"{table}.parquet")
    return out


def test_fixture_has_every_table(tmp_path):
    snapshot = make_snapshot(tmp_path / "v1", users=200, brands=10, days=120)
    for table in TABLES:
        frame = pl.read_parquet(snapshot / f"{table}.parquet")
        assert frame.height > 0
        assert dict(frame.schema) == TABLES[table].columns
