"""A synthetic bank with real structure: clients with tastes, brands with categories and prices.

Every client has a taste over K categories, a price tier, an online habit and an activity rate;
every brand has a category, a price tier, a popularity and an online share. A transaction picks a
category by the client's taste, then a brand of that category and (mostly) the client's tier by
popularity. A client's first purchase at a brand is therefore predictable from who they are and
what else they buy, which is what a look-alike model must learn. The segment code follows the
client's strongest taste, so segments carry signal without giving the answer away.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

K = 8  # taste categories
CATEGORY_NAMES = ["продукты", "кафе и рестораны", "аптеки", "одежда", "электроника", "красота",
                  "дом и ремонт", "путешествия"]
REGIONS = ["МОСКВА", "САНКТ-ПЕТЕРБУРГ", "МОСКОВСКАЯ ОБЛАСТЬ", "СВЕРДЛОВСКАЯ ОБЛАСТЬ", "НОВОСИБИРСКАЯ ОБЛАСТЬ",
           "КРАСНОДАРСКИЙ КРАЙ", "РЕСПУБЛИКА ТАТАРСТАН", "НИЖЕГОРОДСКАЯ ОБЛАСТЬ", ""]
REGION_SIZES = ["msk", "urban", "town", "rural"]
VIP = ["not_vip", "MASS", "UPPERMASS", "VIP"]
AMOUNT_BUCKETS = ["0-100", "100-500", "500-1k", "1k-5k", "5k-10k", "10k+"]
PRODUCTS = ["CARD_DEBIT", "CARD_CREDIT", "DEPOSIT", "LOAN", "SAVINGS"]
TEXTS_FILE = Path(__file__).parent / "data" / "offer_texts.txt"

SCALES = {
    # users, brands, merchants per brand (mean), transactions per user per month (mean), offers per month
    "tiny": dict(users=600, brands=40, tx_per_month=5.0, offers_per_month=12, new_users=0.08, new_brands=0.1),
    "small": dict(users=5_000, brands=300, tx_per_month=8.0, offers_per_month=60, new_users=0.05, new_brands=0.05),
    "full": dict(users=50_000, brands=6_000, tx_per_month=17.0, offers_per_month=1_500, new_users=0.02,
                 new_brands=0.02),
}


@dataclass
class Behaviour:
    """Per-month knobs; drift scenarios change them for the month of their version."""

    online_shift: float = 0.0
    tier_shift: float = 0.0
    frequency: float = 1.0
    weekend_bias: float = 0.0
    segment_activity: np.ndarray | None = None  # per strongest-taste multiplier (client-mix drift)
    tier_activity: np.ndarray | None = None     # per price-tier multiplier (client-mix drift: age, vip)
    receipt_mix: np.ndarray | None = None       # category weights for receipts (receipt drift)
    receipt_cost_shift: float = 0.0


@dataclass
class World:
    rng: np.random.Generator
    scale: dict
    taste: np.ndarray            # users x K
    tier: np.ndarray             # users
    online: np.ndarray           # users
    rate: np.ndarray             # users: transactions per month
    user_ids: np.ndarray
    user_since: np.ndarray       # month index the user appears
    brand_ids: np.ndarray
    brand_category: np.ndarray
    brand_tier: np.ndarray
    brand_pop: np.ndarray
    brand_online: np.ndarray
    brand_since: np.ndarray
    people: pl.DataFrame = field(default=None)  # type: ignore[assignment]
    segments: pl.DataFrame = field(default=None)  # type: ignore[assignment]
    accounts: pl.DataFrame = field(default=None)  # type: ignore[assignment]
    merchants: pl.DataFrame = field(default=None)  # type: ignore[assignment]

    @property
    def n_users(self) -> int:
        return len(self.user_ids)


def _users(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    taste = rng.dirichlet(np.full(K, 0.35), size=n)
    return dict(taste=taste, tier=rng.choice(3, size=n, p=[0.45, 0.4, 0.15]),
                online=rng.beta(2, 5, size=n), rate=rng.lognormal(0, 0.5, size=n))


def _brands(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return dict(category=rng.integers(0, K, size=n), tier=rng.choice(3, size=n, p=[0.5, 0.35, 0.15]),
                pop=rng.pareto(1.2, size=n) + 0.05, online=rng.beta(1.5, 4, size=n))


def build_world(scale_name: str, seed: int, months: int) -> World:
    """Clients and brands for the whole timeline: a base population plus newcomers each month."""
    rng = np.random.default_rng(seed)
    scale = SCALES[scale_name]
    base_users, base_brands = scale["users"], scale["brands"]
    extra_users = int(base_users * scale["new_users"]) * months
    extra_brands = int(base_brands * scale["new_brands"]) * months
    users = _users(rng, base_users + extra_users)
    brands = _brands(rng, base_brands + extra_brands)
    user_since = np.concatenate([np.zeros(base_users, int),
                                 np.repeat(np.arange(1, months + 1), int(base_users * scale["new_users"]))])
    brand_since = np.concatenate([np.zeros(base_brands, int),
                                  np.repeat(np.arange(1, months + 1), int(base_brands * scale["new_brands"]))])
    world = World(rng=rng, scale=scale, taste=users["taste"], tier=users["tier"], online=users["online"],
                  rate=users["rate"] * scale["tx_per_month"], user_ids=np.arange(50_001, 50_001 + len(user_since)),
                  user_since=user_since, brand_ids=400_000 + rng.permutation(len(brand_since) * 7)[:len(brand_since)],
                  brand_category=brands["category"], brand_tier=brands["tier"], brand_pop=brands["pop"],
                  brand_online=brands["online"], brand_since=brand_since)
    world.people, world.segments, world.accounts = _profiles(world)
    world.merchants = _merchants(world)
    return world


def _profiles(world: World) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    rng, n = world.rng, world.n_users
    top = world.taste.argmax(axis=1)
    # The segment code follows the strongest taste half of the time: a signal, not the answer.
    code = np.where(rng.random(n) < 0.5, top, rng.integers(0, K, n)) * 3 + world.tier
    age = 20 + 5 * np.clip(np.round(rng.normal(3 + world.tier, 2, n)), 0, 9).astype(int)
    region_size = rng.choice(4, n, p=[0.2, 0.45, 0.25, 0.1])
    people = pl.DataFrame({
        "user_id": world.user_ids, "age_bucket": age.astype(str),
        "gender_cd": np.where(rng.random(n) < 0.5, "M", "F"),
        "region": np.array(REGIONS)[np.where(region_size == 0, 0, rng.integers(1, len(REGIONS), n))],
        "last_activity_day": None,
    }).with_columns(pl.col("region").replace("", None), pl.col("last_activity_day").cast(pl.Utf8))
    segments = pl.DataFrame({
        "user_id": world.user_ids,
        "segment": [f"t_{c:02d} ({int(s)})" for c, s in zip(code, rng.integers(10, 90, n))],
        "region_size": np.array(REGION_SIZES)[region_size],
        "auto": (rng.random(n) < 0.2 + 0.4 * world.taste[:, 6]).astype(float),
        "traveler": (rng.random(n) < 0.1 + 0.8 * world.taste[:, 7]).astype(float),
        "entrepreneur": (rng.random(n) < 0.08).astype(float),
        "vip_status": np.array(VIP)[np.clip(world.tier + rng.integers(-1, 2, n), 0, 3)],
    })
    per_user = rng.integers(1, 4, n)
    owner = np.repeat(np.arange(n), per_user)
    opened = rng.integers(0, 60, len(owner))
    closed = rng.random(len(owner)) < 0.15
    accounts = pl.DataFrame({
        "user_id": world.user_ids[owner],
        "product_cd": np.array(PRODUCTS)[np.minimum(rng.integers(0, 5, len(owner)), world.tier[owner] + 2)],
        "open_month": [f"{2020 + m // 12}-{m % 12 + 1:02d}" for m in opened],
        "close_month": [f"{2025}-{(m % 5) + 1:02d}" if c else None for m, c in zip(opened, closed)],
        "account_status_cd": np.where(closed, "CLOSED", "OPEN"),
    })
    return people, segments, accounts


def _merchants(world: World) -> pl.DataFrame:
    """Merchants (offer partners) over brands: most brands one merchant, some several, a few none."""
    rng = world.rng
    n_brands = len(world.brand_ids)
    counts = np.where(rng.random(n_brands) < 0.05, rng.integers(2, 6, n_brands), 1)
    brand_index = np.repeat(np.arange(n_brands), counts)
    n = len(brand_index)
    brand = world.brand_ids[brand_index].astype(float)
    brand[rng.random(n) < 0.008] = np.nan
    return pl.DataFrame({
        "merchant_id_offer": np.arange(1, n + 1),
        "merchant_status": np.where(rng.random(n) < 0.002, "DLT", "ACT"),
        "brand_dk": brand,
        "since": world.brand_since[brand_index],
    }).with_columns(pl.col("brand_dk").fill_nan(None).cast(pl.Int64))


def purchase_probability(world: World, users: np.ndarray, brand: int, behaviour: Behaviour | None = None) -> np.ndarray:
    """Per-transaction probability that each user's purchase goes to the brand (the generator's truth)."""
    category, tier = world.brand_category[brand], world.brand_tier[brand]
    same = (world.brand_category == category) & (world.brand_tier == tier) & (world.brand_since <= world.brand_since[brand])
    share = world.brand_pop[brand] / world.brand_pop[same].sum()
    tier_fit = np.where(world.tier[users] == tier, 0.8, 0.1)
    return world.taste[users, category] * tier_fit * share


def month_start(first: dt.date, index: int) -> dt.date:
    year, month = divmod(first.month - 1 + index, 12)
    return dt.date(first.year + year, month + 1, 1)


def load_texts() -> list[str]:
    return [line for line in TEXTS_FILE.read_text(encoding="utf-8").splitlines() if line]
