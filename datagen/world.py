"""A synthetic bank with real structure: clients with tastes, brands with categories, prices, regions.

Clients: a taste over K spending categories (Dirichlet), a lifestyle cluster (which shows in age and
segment), a price tier (which shows in vip_status), a home region (region, region_size), an online
habit, a transaction rate and a brand-adoption rate A_u. Brands: a category, a price tier, a popularity
(Pareto), an online share, an affinity per lifestyle cluster, and a footprint (national, or a local
chain of one region).

Adoption (the thing a look-alike model has to predict) has two parts, mixed by the world's
`visibility` v in [0, 1]: how much of a first purchase the data can reveal.

1. The taste law (all of it at v = 0, the generator's original world). Client u picks brands at the
   rate (1 - v) * A_u per month, brand b with probability lambda(u, b) / A_u, where

       lambda(u, b) = A_u * taste[u, cat(b)] * w[type(u), b] / D_u

   type(u) = (tier, region, cluster), w[g, b] = popularity * price fit * region fit * cluster fit,
   and D_u normalises so that sum_b lambda(u, b) = A_u (brands available at the time). Picks are
   drawn with replacement: a pick of a brand the client knows is a repeat, so the hazard of each
   unknown brand stays lambda(u, b) * (1 - v) whatever the client did before (memoryless). The next
   month's new customers of a brand are then a thin random slice of everyone whose type fits it:
   most of the first purchase is chance that no history reveals.
2. The ladder (all of it at v = 1). At world build each client ranks every brand by

       key(u, b) = LADDER_SHARPNESS * v * fit(u, b) + Gumbel noise (a Plackett-Luce order)
       fit(u, b) = log(taste[u, cat(b)] * w[type(u), b]) + ONLINE_FIT * (online_u - mean) * (online_b - mean)

   and walks down this ranking at the rate v * A_u (a Poisson process): each step adopts the next
   brand of the ranking, or nothing if the client knows it already or it has not opened yet. Every
   part of fit shows in data: the category mix in past brands and receipts, the price tier in amounts
   and vip_status, the region and the local chains of its shoppers, the lifestyle cluster in age and
   segment, the online habit in online_transaction_flg, popularity in customer counts; the Gumbel
   noise is the hidden taste, and its weight falls as v grows. Because the walk passes brands the
   client already has, a client keeps adopting at a steady pace and the next brands are the best
   fitting ones the client does not know yet: the repertoire (visible in transactions) and the fit
   predict them, weeks or months ahead.

Offers add an exposure part whatever v is: a client shown an offer (seen) gets the extra hazard
LIFT * lambda(u, b) at the offer's brand while it runs (0.5 seen, 3.0 activated; simulate.py). The
world's `targeting` t in [0, 1] says whom the bank shows offers: the seen clients are the top of
t * log(affinity) + Gumbel noise, affinity = lambda(u, b) (t = 1: mostly likely buyers, the original
world; t = 0: at random). The exposure lift is causal in both, so seens and activations stay
informative about purchases.

After adoption a client keeps buying at the brand with a loyalty weight. So "first purchase at B in
[T, T+d)" depends on the client's category mix (visible through history), price level, region and
lifestyle (visible in the profile), on which brands the client already buys at, and on the offer's
exposure, which is what a look-alike model learns. At v = 0 and t = 1 every draw is the original
generator's (the ladder and its steps use random streams of their own), so today's seeds give
today's data.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

K = 12  # spending categories
L = 4   # lifestyle clusters
CATEGORY_NAMES = ["продукты", "кафе и рестораны", "аптеки", "одежда и обувь", "электроника", "красота",
                  "дом и ремонт", "путешествия", "детские товары", "спорт", "авто", "развлечения"]
REGIONS = ["МОСКВА", "САНКТ-ПЕТЕРБУРГ", "МОСКОВСКАЯ ОБЛАСТЬ", "СВЕРДЛОВСКАЯ ОБЛАСТЬ", "НОВОСИБИРСКАЯ ОБЛАСТЬ",
           "КРАСНОДАРСКИЙ КРАЙ", "РЕСПУБЛИКА ТАТАРСТАН", "НИЖЕГОРОДСКАЯ ОБЛАСТЬ"]
REGION_P = np.array([0.22, 0.12, 0.12, 0.1, 0.1, 0.12, 0.11, 0.11])
R = len(REGIONS)
REGION_SIZES = ["msk", "urban", "town", "rural"]
VIP = ["not_vip", "MASS", "UPPERMASS", "VIP"]
AMOUNT_BUCKETS = ["0-100", "100-500", "500-1k", "1k-5k", "5k-10k", "10k+"]
PRODUCTS = ["CARD_DEBIT", "CARD_CREDIT", "DEPOSIT", "LOAN", "SAVINGS"]
TEXTS_FILE = Path(__file__).parent / "data" / "offer_texts.txt"
# Typical spend per category: 0 cheap (groceries, pharmacy) .. 3 expensive (electronics, travel).
CATEGORY_PRICE = np.array([0, 1, 0, 2, 3, 1, 2, 3, 1, 2, 2, 1])
PRICE_FIT = np.array([[1.0, 0.25, 0.03], [0.35, 1.0, 0.35], [0.08, 0.5, 1.0]])  # user tier x brand tier
LOCAL_FIT = (4.0, 0.02)  # a local chain for clients of its region, for everyone else
LADDER_SHARPNESS = 50.0  # weight of the visible fit against the hidden (Gumbel) taste at visibility 1
ONLINE_FIT = 8.0        # how much an online client prefers online brands (and an offline one offline)
LADDER_DEPTH = 1024     # brands ranked per client: more than any client walks over the timeline
LADDER_STREAM = 1       # the ladders' random stream is (seed, LADDER_STREAM), apart from the taste law's

SCALES = {
    # users, brands, transactions per user per month (mean), brand adoptions per user per month (mean),
    # offers per month, newcomers per version (share of the base), days of prior repertoire,
    # oracle rows kept per held-out offer (None: every active client)
    "tiny": dict(users=600, brands=40, tx_per_month=4.0, adopt_per_month=0.9, offers_per_month=12,
                 new_users=0.08, new_brands=0.1, prior_months=3.0, seen_share=0.12, oracle_top=None),
    "small": dict(users=5_000, brands=300, tx_per_month=8.0, adopt_per_month=2.0, offers_per_month=60,
                  new_users=0.05, new_brands=0.05, prior_months=5.0, seen_share=0.08, oracle_top=None),
    "full": dict(users=50_000, brands=6_000, tx_per_month=11.0, adopt_per_month=8.0, offers_per_month=1_500,
                 new_users=0.02, new_brands=0.02, prior_months=5.0, seen_share=0.06, oracle_top=5_000),
}


@dataclass
class Behaviour:
    """Per-version knobs; drift scenarios change them for the months of their version."""

    online_shift: float = 0.0
    tier_shift: float = 0.0
    frequency: float = 1.0
    weekend_bias: float = 0.0
    segment_activity: np.ndarray | None = None  # per lifestyle-cluster multiplier (client-mix drift)
    tier_activity: np.ndarray | None = None     # per price-tier multiplier (client-mix drift)
    newcomers: float = 1.0                      # how many new clients arrive (client-mix drift)
    newcomer_mix: dict | None = None            # who they are (client-mix drift)
    receipt_mix: np.ndarray | None = None       # category weights for receipts (receipt drift)
    receipt_cost_shift: float = 0.0


@dataclass
class World:
    scale: dict
    # clients
    user_ids: np.ndarray
    user_since: np.ndarray       # era (version index) the client appears in
    taste: np.ndarray            # users x K
    cluster: np.ndarray
    tier: np.ndarray
    region: np.ndarray
    online: np.ndarray
    rate: np.ndarray             # transactions per month
    adopt: np.ndarray            # brand adoptions per month (A_u)
    # brands
    brand_ids: np.ndarray
    brand_since: np.ndarray
    brand_category: np.ndarray
    brand_tier: np.ndarray
    brand_pop: np.ndarray
    brand_online: np.ndarray
    brand_local: np.ndarray      # region index of a local chain, -1 for national brands
    brand_cluster: np.ndarray    # brands x L affinity
    visibility: float = 0.0      # share of adoptions that walk the ladder, and its sharpness (module doc)
    targeting: float = 1.0       # how much the bank shows offers to likely buyers (1) rather than anyone (0)
    ladder: np.ndarray | None = None  # users x depth brand indices, best first (None when visibility is 0)
    people: pl.DataFrame = field(default=None)  # type: ignore[assignment]
    segments: pl.DataFrame = field(default=None)  # type: ignore[assignment]
    accounts: pl.DataFrame = field(default=None)  # type: ignore[assignment]
    merchants: pl.DataFrame = field(default=None)  # type: ignore[assignment]
    _weights: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_brands(self) -> int:
        return len(self.brand_ids)

    def user_type(self, users: np.ndarray) -> np.ndarray:
        return (self.tier[users] * R + self.region[users]) * L + self.cluster[users]

    def type_weights(self, era: int) -> tuple[np.ndarray, np.ndarray]:
        """w[g, b] for brands available in the era (0 otherwise), and S[g, c] = sum of w over category c."""
        if era not in self._weights:
            g = np.arange(3 * R * L)
            tier, region, cluster = g // (R * L), (g // L) % R, g % L
            local = self.brand_local[None, :]
            region_fit = np.where(local < 0, 1.0, np.where(local == region[:, None], *LOCAL_FIT))
            w = (self.brand_pop[None, :] * PRICE_FIT[tier][:, self.brand_tier] * region_fit
                 * self.brand_cluster.T[cluster] * (self.brand_since <= era)[None, :])
            s = np.zeros((len(g), K))
            for c in range(K):
                s[:, c] = w[:, self.brand_category == c].sum(axis=1)
            self._weights[era] = (w, s)
        return self._weights[era]

    def fit(self, users: np.ndarray) -> np.ndarray:
        """fit(u, b) of the ladder for every brand (users x brands): what data shows about the pair."""
        tier, region, cluster = self.tier[users], self.region[users], self.cluster[users]
        local = self.brand_local[None, :]
        region_fit = np.where(local < 0, 1.0, np.where(local == region[:, None], *LOCAL_FIT))
        weight = (self.taste[users][:, self.brand_category] * self.brand_pop[None, :]
                  * PRICE_FIT[tier][:, self.brand_tier] * region_fit * self.brand_cluster.T[cluster])
        online = (self.online[users] - self.online.mean())[:, None] * (self.brand_online - self.brand_online.mean())
        return np.log(weight) + ONLINE_FIT * online

    def hazard(self, users: np.ndarray, brand: int, era: int) -> np.ndarray:
        """lambda(u, b): the generator's true monthly adoption hazard of each client for one brand."""
        w, s = self.type_weights(era)
        types = self.user_type(users)
        norm = (self.taste[users] * s[types]).sum(axis=1)
        return self.adopt[users] * self.taste[users, self.brand_category[brand]] * w[types, brand] / norm


def _clients(rng: np.random.Generator, n: int, mix: dict | None = None) -> dict[str, np.ndarray]:
    mix = mix or {}
    cluster = rng.choice(L, n, p=mix.get("cluster", [0.3, 0.3, 0.25, 0.15]))
    # Each cluster leans to a few categories (so segment and age say something about tastes).
    lean = np.full((L, K), 0.12)
    for c, cats in enumerate([(0, 2, 8, 6), (1, 11, 9, 3), (4, 7, 10, 1), (0, 5, 2, 3)]):
        lean[c, list(cats)] = 0.9
    taste = rng.gamma(lean[cluster]) + 1e-6
    taste /= taste.sum(axis=1, keepdims=True)
    tier_p = np.array(mix.get("tier", [0.45, 0.4, 0.15]))
    tier = rng.choice(3, n, p=tier_p)
    region = rng.choice(R, n, p=REGION_P)
    return dict(taste=taste, cluster=cluster, tier=tier, region=region,
                online=rng.beta(2, 5, n) + 0.15 * (cluster == 1), rate=rng.lognormal(0, 0.5, n),
                adopt=rng.lognormal(0, 0.45, n))


def _brands(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    category = rng.choice(K, n, p=np.array([14, 12, 5, 12, 7, 9, 9, 5, 6, 6, 6, 9]) / 100)
    tier = np.clip(rng.choice(3, n, p=[0.5, 0.35, 0.15]) + (CATEGORY_PRICE[category] >= 3) * rng.integers(0, 2, n),
                   0, 2)
    local = np.where(rng.random(n) < 0.3, rng.choice(R, n, p=REGION_P), -1)
    return dict(category=category, tier=tier, pop=rng.pareto(1.3, n) + 0.05, online=rng.beta(1.5, 4, n),
                local=local, cluster=rng.lognormal(0, 1.0, (n, L)))


def build_world(scale_name: str, seed: int, versions: int, behaviours: dict[int, Behaviour] | None = None,
                visibility: float = 0.0, targeting: float = 1.0) -> World:
    """Clients and brands for the whole timeline: a base population plus newcomers in each later version."""
    if not (0.0 <= visibility <= 1.0 and 0.0 <= targeting <= 1.0):
        raise ValueError("visibility and targeting are in [0, 1]")
    rng = np.random.default_rng(seed)
    scale = SCALES[scale_name]
    behaviours = behaviours or {}
    base_users, base_brands = scale["users"], scale["brands"]
    parts, since = [_clients(rng, base_users)], [np.zeros(base_users, int)]
    for era in range(1, versions + 2):
        b = behaviours.get(era, Behaviour())
        n = int(round(base_users * scale["new_users"] * b.newcomers))
        parts.append(_clients(rng, n, b.newcomer_mix))
        since.append(np.full(n, era))
    users = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    user_since = np.concatenate(since)
    extra_brands = int(round(base_brands * scale["new_brands"]))
    brand_since = np.concatenate([np.zeros(base_brands, int), np.repeat(np.arange(1, versions + 2), extra_brands)])
    brands = _brands(rng, len(brand_since))
    world = World(scale=scale, user_ids=np.arange(50_001, 50_001 + len(user_since)), user_since=user_since,
                  taste=users["taste"], cluster=users["cluster"], tier=users["tier"], region=users["region"],
                  online=np.clip(users["online"], 0, 1), rate=users["rate"] * scale["tx_per_month"],
                  adopt=users["adopt"] * scale["adopt_per_month"],
                  brand_ids=400_000 + rng.permutation(len(brand_since) * 7)[:len(brand_since)],
                  brand_since=brand_since, brand_category=brands["category"], brand_tier=brands["tier"],
                  brand_pop=brands["pop"], brand_online=brands["online"], brand_local=brands["local"],
                  brand_cluster=brands["cluster"], visibility=float(visibility), targeting=float(targeting))
    world.people, world.segments, world.accounts = _profiles(world, rng, behaviours)
    world.merchants = _merchants(world, rng)
    if visibility > 0:
        world.ladder = _ladders(world, np.random.default_rng([seed, LADDER_STREAM]))
    return world


def _ladders(world: World, rng: np.random.Generator, chunk: int = 2048) -> np.ndarray:
    """Each client's ranking of brands (best first, LADDER_DEPTH deep): a Plackett-Luce order by
    exp(LADDER_SHARPNESS * visibility * fit), drawn as the top of fit-weighted keys plus Gumbel noise."""
    depth = min(LADDER_DEPTH, world.n_brands)
    ladder = np.empty((world.n_users, depth), dtype=np.int32)
    sharpness = LADDER_SHARPNESS * world.visibility
    for lo in range(0, world.n_users, chunk):
        users = np.arange(lo, min(lo + chunk, world.n_users))
        keys = sharpness * world.fit(users) + rng.gumbel(size=(len(users), world.n_brands))
        top = np.argpartition(-keys, depth - 1, axis=1)[:, :depth] if depth < world.n_brands else \
            np.broadcast_to(np.arange(world.n_brands), keys.shape)
        order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1, kind="stable")
        ladder[users] = np.take_along_axis(top, order, axis=1)
    return ladder


def _profiles(world: World, rng: np.random.Generator, behaviours: dict[int, Behaviour]
              ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    n = world.n_users
    cluster, tier = world.cluster, world.tier
    # Age follows the lifestyle cluster (families older, city-goers younger) and a bit the tier.
    age_mean = np.array([7.0, 3.0, 5.0, 9.0])[cluster] + 0.6 * tier
    age = 15 + 5 * np.clip(np.round(rng.normal(age_mean, 1.6)), 0, 11).astype(int)
    gender = np.where(rng.random(n) < np.array([0.45, 0.5, 0.62, 0.35])[cluster], "M", "F")
    region_names = np.array(REGIONS, dtype=object)[world.region]
    region_names[rng.random(n) < 0.3] = None  # the real region is often empty
    size = np.where(world.region == 0, 0, rng.choice([1, 2, 3], n, p=[0.55, 0.3, 0.15]))
    size = np.where(world.region == 1, 1, size)
    # Client-mix drift: newcomers of a drifted version come from elsewhere (towns, villages).
    for era, b in behaviours.items():
        if b.newcomer_mix and "region_size" in b.newcomer_mix:
            fresh = world.user_since == era
            size[fresh] = rng.choice(4, fresh.sum(), p=b.newcomer_mix["region_size"])
    people = pl.DataFrame({
        "user_id": world.user_ids, "age_bucket": age.astype(str), "gender_cd": gender,
        "region": pl.Series(region_names.tolist(), dtype=pl.Utf8), "last_activity_day": pl.Series([None] * n,
                                                                                                  dtype=pl.Utf8),
    })
    # The segment code follows the lifestyle cluster and tier most of the time: a signal, not the answer.
    code = np.where(rng.random(n) < 0.7, cluster * 3 + tier, rng.integers(0, 3 * L, n)) + 1
    share = rng.integers(10, 90, n)
    vip = np.clip(tier + (rng.random(n) < 0.15) * rng.choice([-1, 1], n) + (tier == 2) * (rng.random(n) < 0.3), 0, 3)
    segments = pl.DataFrame({
        "user_id": world.user_ids,
        "segment": pl.Series(["t_"] * n) + pl.Series(code).cast(pl.Utf8).str.zfill(2) + " ("
        + pl.Series(share).cast(pl.Utf8) + ")",
        "region_size": np.array(REGION_SIZES)[size],
        "auto": (rng.random(n) < 0.1 + 2.5 * world.taste[:, 10]).astype(float),
        "traveler": (rng.random(n) < 0.05 + 2.0 * world.taste[:, 7]).astype(float),
        "entrepreneur": (rng.random(n) < 0.04 + 0.06 * tier).astype(float),
        "vip_status": np.array(VIP)[vip],
    })
    per_user = rng.integers(1, 4, n)
    owner = np.repeat(np.arange(n), per_user)
    m = len(owner)
    opened = rng.integers(0, 60, m)
    closed = rng.random(m) < 0.15
    closed_month = np.minimum(opened + rng.integers(1, 24, m), 65)
    month_text = lambda k: (pl.Series(2020 + k // 12).cast(pl.Utf8) + "-"  # noqa: E731
                            + pl.Series(k % 12 + 1).cast(pl.Utf8).str.zfill(2))
    accounts = pl.DataFrame({
        "user_id": world.user_ids[owner],
        "product_cd": np.array(PRODUCTS)[np.minimum(rng.integers(0, 5, m), tier[owner] + 2)],
        "open_month": month_text(opened),
        "close_month": pl.select(pl.when(pl.Series(closed)).then(month_text(closed_month))).to_series(),
        "account_status_cd": np.where(closed, "CLOSED", "OPEN"),
    })
    return people, segments, accounts


def _merchants(world: World, rng: np.random.Generator) -> pl.DataFrame:
    """Merchants (offer partners) over brands: most brands one merchant, some several, a few none."""
    n_brands = world.n_brands
    several = rng.random(n_brands) < 0.035
    counts = np.where(several, np.minimum(2 + rng.geometric(0.35, n_brands), 27), 1)
    brand_index = np.repeat(np.arange(n_brands), counts)
    n = len(brand_index)
    brand = world.brand_ids[brand_index].astype(float)
    brand[rng.random(n) < 0.008] = np.nan
    order = rng.permutation(n)  # merchant ids do not follow brand order
    return pl.DataFrame({
        "merchant_id_offer": np.arange(1, n + 1),
        "merchant_status": np.where(rng.random(n) < 0.003, "DLT", "ACT")[order],
        "brand_dk": brand[order],
        "brand_index": brand_index[order],
        "since": world.brand_since[brand_index][order],
    }).with_columns(pl.col("brand_dk").fill_nan(None).cast(pl.Int64))


def month_start(first: dt.date, index: int) -> dt.date:
    year, month = divmod(first.month - 1 + index, 12)
    return dt.date(first.year + year, month + 1, 1)


def load_texts() -> list[str]:
    return [line for line in TEXTS_FILE.read_text(encoding="utf-8").splitlines() if line]
