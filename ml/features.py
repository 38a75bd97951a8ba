"""Features of (user, offer) pairs, computed by one code path for training cuts, the hold-out and serving.

A `History` is the catalog loaded once (ids mapped to dense indices). A `State` is what was known
at a cut day: per-user activity, the user x brand matrix (purchase counts and first purchase day),
brand statistics. Training builds states at past cuts; the serving bundle is the state at the end of
the catalog. `offer_features(state, offer, rows)` turns a state and an offer into the feature matrix,
so training and serving cannot drift apart.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from scipy import sparse

from ml.catalog import lazy_table, read_table
from ml.ground_truth import OPEN_END

EPOCH = dt.date(1970, 1, 1)
OPEN_END_DAY = (OPEN_END - EPOCH).days
# An open-ended offer is treated as lasting this long (for its duration feature).
OPEN_DURATION_DAYS = 365
LIFT_SMOOTHING = 20.0
RECENT_DAYS = 90
MAX_RECEIPT_CATEGORIES = 30
FIXED_POINT = 1_000_000  # exact_mean: 1e-6 resolution, far below any feature difference that matters
# The derived matrices saved with a serving bundle (see `State.derived`).
DERIVED_MATRICES = ("binary", "binary_t", "first_csc", "seen_csc", "activated_csc")

# Categorical user attributes: raw strings in the state, integer codes (levels stored with the model).
CATEGORICAL = ["gender", "region", "segment", "region_size", "vip_status", "age_bucket"]
# Attributes whose share among a brand's customers is compared to their share among all users.
LIFT_ATTRIBUTES = ["segment", "age_bucket", "region", "gender", "region_size", "vip_status"]

USER_NUMERIC = [
    "age", "segment_number", "auto", "traveler", "entrepreneur",
    "accounts_count", "accounts_open", "products_distinct",
    "tx_30d", "tx_90d", "tx_365d", "active_days_90d", "days_since_last_tx", "tenure_days",
    "brands_count", "brands_90d", "new_brands_30d", "new_brands_90d",
    "online_share_90d", "amount_level_90d", "amount_level_all",
    "receipts_90d", "receipts_total", "receipt_cost_level",
    "offers_seen_total", "offers_activated_total", "offers_rewarded_total", "activation_rate",
]
BRAND_FEATURES = [
    "brand_customers_log", "brand_new_30d_log", "brand_new_90d_log", "brand_growth_30d",
    "brand_new_rate_90d", "brand_price_level", "brand_online_share", "brand_repeat_rate",
    "brand_merchants", "brand_known",
]
PAIR_FEATURES = [
    "brand_affinity", "recent_converts_affinity", "item_cf_mean", "item_cf_max", "item_cf_sum",
    "category_affinity", "price_gap", "online_gap",
    *[f"{a}_lift" for a in LIFT_ATTRIBUTES], "segment_lift_recent",
]
OFFER_FEATURES = [
    "offer_duration_days", "offer_start_month", "offer_start_weekday", "offer_text_words",
    "offer_text_missing", "offer_text_online",
]
HISTORY_FEATURES = [
    "offer_seen", "offer_activated", "offer_rewarded", "brand_offers_seen", "brand_offers_activated",
]
FEATURE_NAMES = [*CATEGORICAL, *USER_NUMERIC, *BRAND_FEATURES, *PAIR_FEATURES, *OFFER_FEATURES,
                 *HISTORY_FEATURES]

_ONLINE_WORDS = re.compile(r"интернет|онлайн|доставк|http|www|\.ru|приложен|marketplace|маркетплейс")
_NO_TEXT = re.compile(r"^\s*(сайт не указан)?\s*$")


def day_of(value: dt.date | None) -> int | None:
    return None if value is None else (value - EPOCH).days


def date_of(day: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(day))


def _amount_value(text: str | None) -> float:
    """'100-500' -> 300, '1k-5k' -> 3000, '10k+' -> 15000: the sets are not fixed, so parse, never list."""
    if text is None:
        return math.nan
    cleaned = text.lower().replace(" ", "").replace(",", ".")
    values = []
    for number, suffix in re.findall(r"(\d+(?:\.\d+)?)([kкmм]?)", cleaned):
        scale = 1000.0 if suffix in ("k", "к") else 1e6 if suffix in ("m", "м") else 1.0
        values.append(float(number) * scale)
    if not values:
        return math.nan
    value = (values[0] + values[1]) / 2 if len(values) > 1 else values[0] * (1.5 if "+" in cleaned else 1.0)
    return math.log1p(value)


def amount_level(column: pl.Series) -> pl.Series:
    """Log of a range string's middle, mapped over the distinct values only."""
    distinct = column.unique().to_list()
    mapping = {value: _amount_value(value) for value in distinct if value is not None}
    return column.replace_strict(mapping, default=None, return_dtype=pl.Float32)


def text_signal(text: str | None) -> tuple[float, float, float]:
    """(words, missing, mentions online) of an offer text; the text describes the merchant."""
    text = (text or "").strip()
    missing = 1.0 if _NO_TEXT.match(text) else 0.0
    words = 0.0 if missing else float(len(text.split()))
    online = 1.0 if _ONLINE_WORDS.search(text) else 0.0
    return words, missing, online


@dataclass(frozen=True)
class OfferSpec:
    """An offer as the model sees it: its brand index (-1: unknown), window in days, text, id."""

    brand: int
    start_day: int
    end_day: int
    text: str | None = None
    offer_id: int | None = None

    @property
    def duration(self) -> float:
        if self.end_day >= OPEN_END_DAY:
            return float(OPEN_DURATION_DAYS)
        return float(max(self.end_day - self.start_day + 1, 0))


@dataclass
class History:
    """The catalog loaded once, ids mapped to dense indices (users and brands sorted by id)."""

    user_ids: np.ndarray
    brand_ids: np.ndarray
    tx: pl.DataFrame            # u, b, day, amount, online
    profile: pl.DataFrame       # one row per user index: raw categoricals and static numerics
    receipts: pl.DataFrame      # u, day, category, cost
    categories: list[str]
    interactions: pl.DataFrame  # u, offer_id, b, kind (0 seen, 1 activated, 2 rewarded), day
    offers: pl.DataFrame        # offer_id, merchant_id_offer, start_day, end_day, offer_text, brand_dk, b
    merchants: pl.DataFrame     # merchant_id_offer, merchant_status, brand_dk, b
    transactions: pl.DataFrame  # user_id, brand_dk, event_date: what ground truth is computed from
    min_day: int
    max_day: int
    _first: pl.DataFrame | None = field(default=None, repr=False)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def first_purchases(self) -> pl.DataFrame:
        """(u, b, first day) of every user-brand pair, computed once."""
        if self._first is None:
            # tx is sorted by (u, b, day): a pair's first purchase is the first row of its run (a
            # filter, where a hash group_by held ~1 GB more at 12M rows).
            new_pair = (pl.col("u") != pl.col("u").shift()) | (pl.col("b") != pl.col("b").shift())
            self._first = self.tx.filter(new_pair.fill_null(True)).select("u", "b", pl.col("day").alias("first"))
        return self._first

    @property
    def n_brands(self) -> int:
        return len(self.brand_ids)


def _index(ids: pl.Series, name: str, index: str) -> pl.DataFrame:
    return pl.DataFrame({name: ids}).with_row_index(index).with_columns(pl.col(index).cast(pl.Int32))


def load_history(catalog: Path) -> History:
    catalog = Path(catalog)
    tx = read_table(catalog, "transaction", ["user_id", "brand_dk", "event_date", "amount_bucket",
                                             "online_transaction_flg"])
    tx = tx.drop_nulls(["user_id", "brand_dk", "event_date"])
    people = read_table(catalog, "people").drop_nulls("user_id").unique("user_id", keep="last").sort("user_id")
    segments = read_table(catalog, "segments").drop_nulls("user_id").unique("user_id", keep="last").sort("user_id")
    merchants = read_table(catalog, "merchant").drop_nulls("merchant_id_offer").unique(
        "merchant_id_offer", keep="last").sort("merchant_id_offer")
    offers = read_table(catalog, "offer").drop_nulls(["offer_id", "merchant_id_offer", "start_date"])

    user_ids = pl.concat([people["user_id"], segments["user_id"], tx["user_id"]]).unique().sort()
    brand_ids = pl.concat([tx["brand_dk"], merchants["brand_dk"].drop_nulls()]).unique().sort()
    users = _index(user_ids, "user_id", "u")
    brands = _index(brand_ids, "brand_dk", "b")

    tx_idx = (
        tx.join(users, on="user_id", how="left").join(brands, on="brand_dk", how="left")
        .select(
            "u", "b",
            pl.col("event_date").cast(pl.Int32).alias("day"),
            amount_level(tx["amount_bucket"]).alias("amount"),
            (pl.col("online_transaction_flg").str.to_uppercase().is_in(["Y", "1", "TRUE"])).cast(pl.Int8)
            .alias("online"),
        )
        .sort("u", "b", "day")
    )

    accounts = read_table(catalog, "financial_account").drop_nulls("user_id")
    account_stats = accounts.group_by("user_id").agg(
        pl.len().cast(pl.Float32).alias("accounts_count"),
        pl.col("close_month").is_null().sum().cast(pl.Float32).alias("accounts_open"),
        pl.col("product_cd").n_unique().cast(pl.Float32).alias("products_distinct"),
    )
    profile = (
        users.join(people, on="user_id", how="left").join(segments, on="user_id", how="left")
        .join(account_stats, on="user_id", how="left")
        .sort("u")
        .select(
            "u", "user_id",
            pl.col("gender_cd").str.to_uppercase().alias("gender"),
            pl.col("region").str.to_uppercase(),
            pl.col("segment").str.extract(r"^\s*([^\s(]+)", 1).alias("segment"),
            pl.col("region_size").str.to_lowercase(),
            pl.col("vip_status"),
            pl.col("age_bucket").cast(pl.Float64, strict=False).cast(pl.Int64, strict=False).cast(pl.Utf8)
            .alias("age_bucket"),
            pl.col("age_bucket").cast(pl.Float32, strict=False).alias("age"),
            pl.col("segment").str.extract(r"\((\d+(?:\.\d+)?)\)", 1).cast(pl.Float32, strict=False)
            .alias("segment_number"),
            pl.col("auto").cast(pl.Float32), pl.col("traveler").cast(pl.Float32),
            pl.col("entrepreneur").cast(pl.Float32),
            pl.col("accounts_count").fill_null(0), pl.col("accounts_open").fill_null(0),
            pl.col("products_distinct").fill_null(0),
        )
    )

    receipts = read_table(catalog, "receipts").drop_nulls(["user_id", "date_operated"])
    top = (receipts.group_by("category_name").len().drop_nulls("category_name")
           .sort(["len", "category_name"], descending=[True, False]).head(MAX_RECEIPT_CATEGORIES))
    categories = top["category_name"].to_list()
    category_index = pl.DataFrame({"category_name": categories}).with_row_index("category").with_columns(
        pl.col("category").cast(pl.Int32))
    receipts_idx = (
        receipts.join(users, on="user_id", how="inner").join(category_index, on="category_name", how="left")
        .select("u", pl.col("date_operated").cast(pl.Int32).alias("day"),
                pl.col("category").fill_null(-1), amount_level(receipts["items_cost"]).alias("cost"))
    )

    merchants_idx = merchants.join(brands, on="brand_dk", how="left").with_columns(pl.col("b").fill_null(-1))
    offers_idx = (
        offers.join(merchants_idx.select("merchant_id_offer", "brand_dk", "b"), on="merchant_id_offer", how="left")
        .with_columns(
            pl.col("b").fill_null(-1),
            pl.col("start_date").cast(pl.Int32).alias("start_day"),
            pl.when(pl.col("end_date").is_null() | (pl.col("end_date") >= OPEN_END)).then(OPEN_END_DAY)
            .otherwise(pl.col("end_date").cast(pl.Int32)).cast(pl.Int32).alias("end_day"),
        )
        .sort("offer_id", "merchant_id_offer", "start_day", "end_day", "offer_text", nulls_last=True)
    )
    offer_brand = offers_idx.unique("offer_id", keep="first").select("offer_id", "b")

    # Only the columns used; the catalog's rows are already distinct, and repeats count once where
    # it matters (OfferUsers), so no sort or unique over these ~10M rows (each costs GBs).
    # Built by the streaming engine, so the three tables are never all materialised at once; row
    # order is whatever the engine gives, and nothing downstream depends on it.
    parts = [
        lazy_table(catalog, table).select("user_id", "offer_id", pl.lit(kind, dtype=pl.Int8).alias("kind"),
                                          pl.col(date_col).cast(pl.Int32).alias("day"))
        .drop_nulls(["user_id", "offer_id"])
        for kind, table, date_col in ((0, "offer_seens", "start_date"), (1, "offer_activation", "activation_date"),
                                      (2, "offer_reward", "event_date"))
    ]
    interactions = (
        pl.concat(parts).join(users.lazy(), on="user_id", how="inner")
        .join(offer_brand.lazy(), on="offer_id", how="left")
        .select("u", "offer_id", pl.col("b").fill_null(-1), "kind", "day")
        .collect(engine="streaming")
    )

    days = tx_idx["day"]
    return History(
        user_ids=users["user_id"].to_numpy(), brand_ids=brands["brand_dk"].to_numpy(),
        tx=tx_idx, profile=profile, receipts=receipts_idx, categories=categories,
        interactions=interactions, offers=offers_idx, merchants=merchants_idx,
        transactions=tx.select("user_id", "brand_dk", "event_date"),
        min_day=int(days.min()) if len(days) else 0, max_day=int(days.max()) if len(days) else 0,
    )


@dataclass
class State:
    """What was known at `cut` (every fact strictly before that day)."""

    cut: int
    user_ids: np.ndarray
    brand_ids: np.ndarray
    user_raw: pl.DataFrame          # raw categorical strings per user index
    user_numeric: np.ndarray        # n_users x len(USER_NUMERIC), float32
    counts: sparse.csr_matrix       # user x brand purchase counts
    first: sparse.csr_matrix        # user x brand first purchase day (same structure as counts)
    brand_stats: np.ndarray         # n_brands x (len(BRAND_FEATURES) - 1)
    category_share: np.ndarray      # n_users x n_categories (receipts)
    brand_seen: sparse.csr_matrix   # user x brand: offers of the brand seen before the cut
    brand_activated: sparse.csr_matrix
    offer_users: OfferUsers         # per offer: who saw / activated / was rewarded
    offers: pl.DataFrame
    merchants: pl.DataFrame
    lift_codes: dict[str, np.ndarray] = field(default_factory=dict)
    # Derived once (saved with a bundle): normalised matrices, column views, attribute priors.
    _derived: dict = field(default_factory=dict, repr=False)
    cat_codes: np.ndarray | None = None  # set by `encode_categoricals` with the model's levels

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def derived(self) -> dict:
        """What scoring reads besides the state: matrices in the layout each lookup wants and small
        vectors over them. Computed once, or loaded with a saved bundle."""
        if not self._derived:
            binary = self.counts.copy()
            binary.data = np.ones_like(binary.data, dtype=np.float32)
            first_csc = self.first.tocsc()
            first_csc.sort_indices()
            self._set_derived({"binary": binary.tocsr(), "binary_t": binary.T.tocsr(), "first_csc": first_csc,
                               "seen_csc": self.brand_seen.tocsc(), "activated_csc": self.brand_activated.tocsc()})
        return self._derived

    def _set_derived(self, matrices: dict[str, sparse.spmatrix]) -> None:
        row_nnz = np.diff(matrices["binary"].indptr).astype(np.float32)
        inv = np.where(row_nnz > 0, 1.0 / np.sqrt(np.maximum(row_nnz, 1)), 0.0).astype(np.float32)
        priors = {}
        for name, codes in self.lift_codes.items():
            levels = int(codes.max()) + 1 if len(codes) else 1
            priors[name] = np.bincount(codes, minlength=levels).astype(np.float64) / max(len(codes), 1)
        self._derived.update(matrices, row_inv=inv, row_nnz=row_nnz,
                             brand_nnz=np.diff(matrices["first_csc"].indptr).astype(np.float32), priors=priors)

    # --- persistence: the serving bundle is a saved state -------------------------------------------
    # Arrays are .npy files loaded memory-mapped (copy-on-write): the serving process holds them as
    # page cache, which the kernel can drop and read again, not as private memory. Loading the next
    # bundle beside the one that serves therefore does not double the API's memory, and the
    # derived matrices are saved too, so a load computes nothing.

    def _sparse(self) -> dict[str, sparse.spmatrix]:
        derived = self.derived()
        return {"counts": self.counts, "first": self.first, "brand_seen": self.brand_seen,
                "brand_activated": self.brand_activated, **{name: derived[name] for name in DERIVED_MATRICES}}

    def save(self, out: Path) -> None:
        out = Path(out)
        arrays = out / "arrays"
        arrays.mkdir(parents=True, exist_ok=True)
        frame = self.user_raw.with_columns(pl.Series("user_id", self.user_ids))
        for i, name in enumerate(USER_NUMERIC):
            frame = frame.with_columns(pl.Series(name, self.user_numeric[:, i]))
        frame.write_parquet(out / "users.parquet")
        pl.DataFrame({"brand_dk": self.brand_ids, **{
            name: self.brand_stats[:, i] for i, name in enumerate(BRAND_FEATURES[:-1])}}).write_parquet(
            out / "brands.parquet")
        matrices = self._sparse()
        for name, matrix in matrices.items():
            for part in ("data", "indices", "indptr"):
                np.save(arrays / f"{name}.{part}.npy", getattr(matrix, part))
        np.save(arrays / "category_share.npy", self.category_share)
        for part in ("offer_ids", "indptr", "indices"):
            np.save(arrays / f"offer_users.{part}.npy", getattr(self.offer_users, part))
        for name, codes in self.lift_codes.items():
            np.save(arrays / f"lift.{name}.npy", codes)
        self.offers.write_parquet(out / "offers.parquet")
        self.merchants.write_parquet(out / "merchants.parquet")
        (out / "state.json").write_text(json.dumps({
            "cut": self.cut, "cut_date": str(date_of(self.cut)), "users": self.n_users,
            "brands": len(self.brand_ids), "features": FEATURE_NAMES, "lift_attributes": list(self.lift_codes),
            "matrices": {name: {"format": matrix.format, "shape": list(matrix.shape)}
                         for name, matrix in matrices.items()},
        }, indent=2))

    @classmethod
    def load(cls, directory: Path) -> State:
        directory = Path(directory)
        meta = json.loads((directory / "state.json").read_text())
        users = pl.read_parquet(directory / "users.parquet")
        brands = pl.read_parquet(directory / "brands.parquet")

        def array(name: str) -> np.ndarray:
            return np.load(directory / "arrays" / f"{name}.npy", mmap_mode="c")

        def matrix(name: str) -> sparse.spmatrix:
            kind = {"csr": sparse.csr_matrix, "csc": sparse.csc_matrix}[meta["matrices"][name]["format"]]
            return kind((array(f"{name}.data"), array(f"{name}.indices"), array(f"{name}.indptr")),
                        shape=tuple(meta["matrices"][name]["shape"]), copy=False)

        state = cls(
            cut=int(meta["cut"]), user_ids=users["user_id"].to_numpy(), brand_ids=brands["brand_dk"].to_numpy(),
            user_raw=users.select(CATEGORICAL),
            user_numeric=users.select(USER_NUMERIC).to_numpy().astype(np.float32),
            counts=matrix("counts"), first=matrix("first"),
            brand_stats=brands.select(BRAND_FEATURES[:-1]).to_numpy().astype(np.float32),
            category_share=array("category_share"),
            brand_seen=matrix("brand_seen"), brand_activated=matrix("brand_activated"),
            offer_users=OfferUsers(array("offer_users.offer_ids"), array("offer_users.indptr"),
                                   array("offer_users.indices")),
            offers=pl.read_parquet(directory / "offers.parquet"),
            merchants=pl.read_parquet(directory / "merchants.parquet"),
            lift_codes={name: array(f"lift.{name}") for name in meta["lift_attributes"]},
        )
        state._set_derived({name: matrix(name) for name in DERIVED_MATRICES})
        return state


@dataclass
class OfferUsers:
    """Who saw (kind 0), activated (1) or was rewarded for (2) each offer: a deduplicated sparse
    matrix with one row per (offer, kind), row = offer's position in `offer_ids` * 3 + kind."""

    offer_ids: np.ndarray           # sorted distinct offer ids
    indptr: np.ndarray              # CSR row pointers of the (len(offer_ids) * 3) x n_users matrix
    indices: np.ndarray             # its column (user) indices, sorted within a row

    @classmethod
    def build(cls, frame: pl.LazyFrame, n_users: int) -> OfferUsers:
        """From rows (offer_id, kind, u); repeated rows count once.

        Each row becomes one int64 cell number, (position of the offer * 3 + kind) * n_users + u: sorted
        and deduplicated, the cells are the CSR structure (rows in order, users sorted within a row),
        at 8 bytes a row; building a COO matrix and converting it held ~0.3 GB more at the peak of a
        full-scale state (28M interactions).
        """
        offer_ids = np.sort(frame.select(pl.col("offer_id").unique()).collect(engine="streaming")["offer_id"]
                            .to_numpy())
        positions = pl.DataFrame({"offer_id": offer_ids}).with_row_index("position").lazy()
        cell = ((pl.col("position").cast(pl.Int64) * 3 + pl.col("kind")) * n_users + pl.col("u")).alias("cell")
        # Sorted, then the first of each run of equal cells (numpy 2.3's np.unique took 40 s here, this 3 s).
        cells = frame.join(positions, on="offer_id").select(cell).collect(engine="streaming")["cell"].sort()
        cells = cells.filter(cells.ne_missing(cells.shift())).to_numpy()
        indptr = np.zeros(len(offer_ids) * 3 + 1, dtype=np.int64)
        np.cumsum(np.bincount(cells // n_users, minlength=len(offer_ids) * 3), out=indptr[1:])
        return cls(offer_ids, indptr, (cells % n_users).astype(np.int32))

    def users(self, offer_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """User indices (seen, activated, rewarded) of one offer; None for an offer nobody interacted with."""
        position = int(np.searchsorted(self.offer_ids, offer_id))
        if position == len(self.offer_ids) or self.offer_ids[position] != offer_id:
            return None
        indptr, indices = self.indptr, self.indices
        return tuple(indices[indptr[position * 3 + kind]:indptr[position * 3 + kind + 1]] for kind in range(3))


def exact_mean(column: str) -> pl.Expr:
    """Mean of a float column that does not depend on row order or thread count: a parallel float sum
    adds partial sums in whatever order threads finish, which changed features in the last bits and
    so the trained model. Values are summed as integers in fixed point (1e-6) instead, which is exact."""
    fixed = (pl.col(column).cast(pl.Float64) * FIXED_POINT).round().cast(pl.Int64)
    return fixed.sum().cast(pl.Float64) / pl.col(column).count() / FIXED_POINT


def _scatter(n: int, frame: pl.DataFrame, column: str, fill: float = 0.0) -> np.ndarray:
    values = np.full(n, fill, dtype=np.float32)
    if frame.height:
        values[frame["u"].to_numpy()] = frame[column].fill_null(fill).to_numpy().astype(np.float32)
    return values


def _csr(n_rows: int, n_cols: int, rows: np.ndarray, cols: np.ndarray, data: np.ndarray) -> sparse.csr_matrix:
    matrix = sparse.csr_matrix((data, (rows, cols)), shape=(n_rows, n_cols))
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


def state_at(history: History, cut: int, offer_interactions_until: int | None = None) -> State:
    """Everything known before `cut`, except a user's interactions with the scored offer itself
    (seen/activated/rewarded): those are whatever the catalog holds (optionally up to
    `offer_interactions_until`), because serving sees an offer's activations as they arrive."""
    n, n_brands = history.n_users, history.n_brands
    # Lazy, by the streaming engine: each aggregate below reads the transactions before the cut in
    # chunks, never a filtered copy of them (~300 MB less at 12M rows); every result is sorted or
    # scattered by index, so the engine's row order does not matter.
    tx = history.tx.lazy().filter(pl.col("day") < cut)
    pairs = (tx.group_by("u", "b").agg(pl.len().alias("n"), pl.col("day").min().alias("first"))
             .collect(engine="streaming").sort("u", "b"))
    u = pairs["u"].to_numpy()
    b = pairs["b"].to_numpy()
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(u, minlength=n), out=indptr[1:])
    counts = sparse.csr_matrix((pairs["n"].to_numpy().astype(np.float32), b.astype(np.int32), indptr),
                               shape=(n, n_brands))
    first = sparse.csr_matrix((pairs["first"].to_numpy().astype(np.int32), b.astype(np.int32), indptr),
                              shape=(n, n_brands))
    first_days = pairs["first"].to_numpy()

    recent = tx.filter(pl.col("day") >= cut - RECENT_DAYS)
    activity = tx.group_by("u").agg(
        (pl.col("day") >= cut - 30).sum().alias("tx_30d"),
        (pl.col("day") >= cut - 365).sum().alias("tx_365d"),
        (cut - pl.col("day").max()).alias("days_since_last_tx"),
        (cut - pl.col("day").min()).alias("tenure_days"),
        exact_mean("amount").alias("amount_level_all"),
    ).collect(engine="streaming")
    activity_recent = recent.group_by("u").agg(
        pl.len().alias("tx_90d"), pl.col("day").n_unique().alias("active_days_90d"),
        exact_mean("online").alias("online_share_90d"), exact_mean("amount").alias("amount_level_90d"),
        pl.col("b").n_unique().alias("brands_90d"),
    ).collect(engine="streaming")
    receipts = history.receipts.filter(pl.col("day") < cut)
    receipt_stats = receipts.group_by("u").agg(
        (pl.col("day") >= cut - RECENT_DAYS).sum().alias("receipts_90d"), pl.len().alias("receipts_total"),
        exact_mean("cost").alias("receipt_cost_level"),
    )
    # Lazy: each query below filters and aggregates in one pass, never copying the interactions.
    interactions = history.interactions.lazy().filter(pl.col("day").is_null() | (pl.col("day") < cut))
    engagement = interactions.group_by("u").agg(
        (pl.col("kind") == 0).sum().alias("offers_seen_total"),
        (pl.col("kind") == 1).sum().alias("offers_activated_total"),
        (pl.col("kind") == 2).sum().alias("offers_rewarded_total"),
    ).collect()
    profile = history.profile
    columns: dict[str, np.ndarray] = {
        name: profile[name].fill_null(np.nan).to_numpy().astype(np.float32)
        for name in ("age", "segment_number", "auto", "traveler", "entrepreneur", "accounts_count",
                     "accounts_open", "products_distinct")
    }
    for frame, names in ((activity, ("tx_30d", "tx_365d", "amount_level_all")),
                         (activity_recent, ("tx_90d", "active_days_90d", "online_share_90d", "amount_level_90d",
                                            "brands_90d")),
                         (receipt_stats, ("receipts_90d", "receipts_total", "receipt_cost_level")),
                         (engagement, ("offers_seen_total", "offers_activated_total", "offers_rewarded_total"))):
        for name in names:
            fill = np.nan if name in ("amount_level_all", "amount_level_90d", "online_share_90d",
                                      "receipt_cost_level") else 0.0
            columns[name] = _scatter(n, frame, name, fill)
    # Never bought anything: "long ago" rather than missing, so trees see one ordered scale.
    columns["days_since_last_tx"] = _scatter(n, activity, "days_since_last_tx", 9999.0)
    columns["tenure_days"] = _scatter(n, activity, "tenure_days", 0.0)
    row_of = np.repeat(np.arange(n), np.diff(indptr))
    columns["brands_count"] = np.diff(indptr).astype(np.float32)
    columns["new_brands_30d"] = np.bincount(row_of[first_days >= cut - 30], minlength=n).astype(np.float32)
    columns["new_brands_90d"] = np.bincount(row_of[first_days >= cut - RECENT_DAYS], minlength=n).astype(np.float32)
    columns["activation_rate"] = (columns["offers_activated_total"] / (columns["offers_seen_total"] + 1.0)).astype(
        np.float32)
    user_numeric = np.column_stack([columns[name] for name in USER_NUMERIC]).astype(np.float32)

    # Brand statistics.
    brand_of = b
    customers = np.bincount(brand_of, minlength=n_brands).astype(np.float64)
    new_30 = np.bincount(brand_of[first_days >= cut - 30], minlength=n_brands).astype(np.float64)
    new_90 = np.bincount(brand_of[first_days >= cut - RECENT_DAYS], minlength=n_brands).astype(np.float64)
    repeat = np.bincount(brand_of[pairs["n"].to_numpy() >= 2], minlength=n_brands).astype(np.float64)
    brand_tx = tx.group_by("b").agg(exact_mean("amount").alias("price"), exact_mean("online").alias("online")
                                    ).collect(engine="streaming")
    price = np.full(n_brands, np.nan)
    online = np.full(n_brands, np.nan)
    if brand_tx.height:
        price[brand_tx["b"].to_numpy()] = brand_tx["price"].fill_null(np.nan).to_numpy()
        online[brand_tx["b"].to_numpy()] = brand_tx["online"].fill_null(np.nan).to_numpy()
    merchants_per_brand = np.bincount(history.merchants.filter(pl.col("b") >= 0)["b"].to_numpy(),
                                      minlength=n_brands).astype(np.float64)
    brand_stats = np.column_stack([
        np.log1p(customers), np.log1p(new_30), np.log1p(new_90), new_30 / np.maximum(customers, 1),
        new_90 / np.maximum(n - customers + new_90, 1), price, online, repeat / np.maximum(customers, 1),
        merchants_per_brand,
    ]).astype(np.float32)

    # Receipt categories: each user's share of receipts per category.
    n_categories = max(len(history.categories), 1)
    share = np.zeros((n, n_categories), dtype=np.float32)
    known = receipts.filter(pl.col("category") >= 0).group_by("u", "category").len()
    if known.height:
        np.add.at(share, (known["u"].to_numpy(), known["category"].to_numpy()), known["len"].to_numpy())
        share /= np.maximum(share.sum(axis=1, keepdims=True), 1.0)

    seen, activated = (interactions.filter((pl.col("b") >= 0) & (pl.col("kind") == kind)).select("u", "b").collect()
                       for kind in (0, 1))
    brand_seen = _csr(n, n_brands, seen["u"].to_numpy(), seen["b"].to_numpy(), np.ones(seen.height, np.float32))
    brand_activated = _csr(n, n_brands, activated["u"].to_numpy(), activated["b"].to_numpy(),
                           np.ones(activated.height, np.float32))
    del seen, activated

    offer_frame = history.interactions.lazy()
    if offer_interactions_until is not None:
        offer_frame = offer_frame.filter(pl.col("day").is_null() | (pl.col("day") < offer_interactions_until))
    offer_users = OfferUsers.build(offer_frame.select("offer_id", "kind", "u"), n)

    user_raw = profile.select(CATEGORICAL)
    lift_codes = {}
    for name in LIFT_ATTRIBUTES:
        # Codes only compare users within this state, so any stable coding will do; missing is a level.
        lift_codes[name] = user_raw[name].fill_null("<missing>").cast(pl.Categorical).to_physical().to_numpy(
        ).astype(np.int32)
    return State(
        cut=int(cut), user_ids=history.user_ids, brand_ids=history.brand_ids, user_raw=user_raw,
        user_numeric=user_numeric, counts=counts, first=first, brand_stats=brand_stats, category_share=share,
        brand_seen=brand_seen, brand_activated=brand_activated, offer_users=offer_users,
        offers=history.offers, merchants=history.merchants, lift_codes=lift_codes,
    )


# --- categorical levels (stored with the model, applied to any state) ---------------------------------

def categorical_levels(user_raw: pl.DataFrame) -> dict[str, list[str]]:
    """Levels by frequency (ties by value): the model's fixed dictionary for each categorical."""
    levels = {}
    for name in CATEGORICAL:
        counts = user_raw.select(pl.col(name).drop_nulls()).group_by(name).len()
        levels[name] = counts.sort(["len", name], descending=[True, False])[name].to_list()
    return levels


def encode_categoricals(state: State, levels: dict[str, list[str]]) -> None:
    """Integer codes by the model's levels; unknown or missing values are -1."""
    codes = []
    for name in CATEGORICAL:
        mapping = {value: float(i) for i, value in enumerate(levels.get(name, []))}
        codes.append(state.user_raw[name].replace_strict(mapping, default=-1.0, return_dtype=pl.Float32).to_numpy())
    state.cat_codes = np.column_stack(codes).astype(np.float32) if codes else np.zeros((state.n_users, 0), np.float32)


# --- the features of one offer for a set of users ------------------------------------------------------

def brand_column(state: State, brand: int) -> tuple[np.ndarray, np.ndarray]:
    """(user indices, first purchase day) of everyone who bought at the brand before the state's cut."""
    if brand < 0 or brand >= len(state.brand_ids):
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32)
    first_csc = state.derived()["first_csc"]
    lo, hi = first_csc.indptr[brand], first_csc.indptr[brand + 1]
    return first_csc.indices[lo:hi], first_csc.data[lo:hi]


def customers_before(state: State, brand: int, day: int) -> np.ndarray:
    users, first = brand_column(state, brand)
    return users[first < day]


def similarities(state: State, brand: int, members: np.ndarray, recent: np.ndarray,
                 rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per user in `rows`: cosine of the user's normalised brand vector with the centroid of the brand's
    customers (`brand_affinity`) and of its recent converts, and the item-item sum / max of cosine
    similarities between the user's brands and this brand. Costs the nonzeros of the members and rows."""
    derived = state.derived()
    binary, inv = derived["binary"], derived["row_inv"]
    m = len(rows)
    if len(members) == 0:
        zeros = np.zeros(m, dtype=np.float32)
        return zeros, zeros, zeros, zeros
    member_rows = binary[members]
    co_buyers = np.asarray(member_rows.sum(axis=0)).ravel()
    centroid = member_rows.T @ inv[members]
    recent_centroid = binary[recent].T @ inv[recent] if len(recent) else np.zeros_like(centroid)
    right = np.zeros((binary.shape[1], 3), dtype=np.float32)
    for column, vector in ((0, centroid), (1, recent_centroid)):
        norm = float(np.linalg.norm(vector))
        if norm > 0:
            right[:, column] = vector / norm
    cosine = (co_buyers / np.sqrt(len(members) * np.maximum(derived["brand_nnz"], 1))).astype(np.float32)
    if 0 <= brand < len(cosine):
        cosine[brand] = 0.0
    right[:, 2] = cosine
    sub = binary if m == state.n_users and np.array_equal(rows, np.arange(m)) else binary[rows]
    user_side = np.asarray(sub @ right)
    values = np.append(cosine[sub.indices], np.float32(0))
    item_max = np.maximum.reduceat(values, np.minimum(sub.indptr[:-1], len(values) - 1))
    item_max[np.diff(sub.indptr) == 0] = 0.0
    inv_rows = inv[rows]
    return ((inv_rows * user_side[:, 0]).astype(np.float32), (inv_rows * user_side[:, 1]).astype(np.float32),
            user_side[:, 2].astype(np.float32), item_max.astype(np.float32))


def offer_members(state: State, offer: OfferSpec) -> tuple[np.ndarray, np.ndarray]:
    """The brand's customers before the offer's start, and those of them who converted recently."""
    users, first = brand_column(state, offer.brand)
    members = users[first < offer.start_day]
    recent = users[(first < offer.start_day) & (first >= offer.start_day - RECENT_DAYS)]
    return members, recent


def _lift(state: State, name: str, members: np.ndarray) -> np.ndarray:
    codes = state.lift_codes[name]
    prior = state.derived()["priors"][name]
    counts = np.bincount(codes[members], minlength=len(prior)).astype(np.float64)
    share = (counts + LIFT_SMOOTHING * prior) / (len(members) + LIFT_SMOOTHING)
    return (share / np.maximum(prior, 1e-12)).astype(np.float32)[codes]


def offer_features(state: State, offer: OfferSpec, rows: np.ndarray | None = None) -> np.ndarray:
    """Feature matrix (rows x FEATURE_NAMES) of users `rows` (default: all) for `offer`.

    Brand-side aggregates use the brand's customers before the offer's start, so a user who first buys
    inside the window never describes the brand they are scored for.
    """
    if state.cat_codes is None:
        raise ValueError("encode_categoricals(state, levels) first")
    derived = state.derived()
    n = state.n_users
    rows = np.arange(n) if rows is None else np.asarray(rows)
    brand = offer.brand
    members, recent = offer_members(state, offer)
    affinity, recent_affinity, item_sum, item_max = similarities(state, brand, members, recent, rows)
    if len(members):
        centroid_categories = state.category_share[members].mean(axis=0)
    else:
        centroid_categories = np.zeros(state.category_share.shape[1], np.float32)
    item_mean = item_sum / np.maximum(derived["row_nnz"][rows], 1.0)
    user_categories = state.category_share[rows]
    norms = np.linalg.norm(user_categories, axis=1) * max(float(np.linalg.norm(centroid_categories)), 1e-12)
    category_affinity = np.where(norms > 0, user_categories @ centroid_categories / np.maximum(norms, 1e-12), 0.0)

    if 0 <= brand < len(state.brand_ids):
        stats = state.brand_stats[brand]
        known = 1.0
    else:
        stats = np.full(len(BRAND_FEATURES) - 1, np.nan, dtype=np.float32)
        known = 0.0
    user = state.user_numeric[rows]
    online_share = user[:, USER_NUMERIC.index("online_share_90d")]
    amount = user[:, USER_NUMERIC.index("amount_level_90d")]
    price_gap = amount - stats[BRAND_FEATURES.index("brand_price_level")]
    online_gap = online_share - stats[BRAND_FEATURES.index("brand_online_share")]
    lifts = [_lift(state, name, members)[rows] for name in LIFT_ATTRIBUTES]
    segment_recent = _lift(state, "segment", recent)[rows]

    start = date_of(offer.start_day)
    words, missing, online_text = text_signal(offer.text)
    offer_values = np.array([offer.duration, start.month, start.weekday(), words, missing, online_text],
                            dtype=np.float32)

    exact = state.offer_users.users(offer.offer_id) if offer.offer_id is not None else None
    flags = []
    for kind in range(3):
        flag = np.zeros(n, dtype=np.float32)
        if exact is not None and len(exact[kind]):
            flag[exact[kind]] = 1.0
        flags.append(flag[rows])
    if 0 <= brand < len(state.brand_ids):
        brand_seen = np.asarray(derived["seen_csc"][:, brand].todense()).ravel()[rows]
        brand_activated = np.asarray(derived["activated_csc"][:, brand].todense()).ravel()[rows]
    else:
        brand_seen = brand_activated = np.zeros(len(rows), np.float32)

    m = len(rows)
    blocks = [
        state.cat_codes[rows], user,
        np.broadcast_to(np.append(stats, known).astype(np.float32), (m, len(BRAND_FEATURES))),
        np.column_stack([affinity, recent_affinity, item_mean, item_max, item_sum, category_affinity, price_gap,
                         online_gap, *lifts, segment_recent]),
        np.broadcast_to(offer_values, (m, len(OFFER_FEATURES))),
        np.column_stack([*flags, brand_seen, brand_activated]),
    ]
    return np.hstack(blocks, dtype=np.float32)
