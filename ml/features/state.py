"""A `State`: what was known at a cut day, as arrays the features read, and its persistence (the
serving bundle is a saved state).

Per user: profile codes, activity, receipts, engagement; the user x brand matrix (purchase counts and
first purchase day) and its ALS embeddings; per brand: statistics; per offer: who saw, activated and
was rewarded. Training builds states at past cuts; the serving bundle is the state after the
catalog's last day.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from scipy import sparse

from ml.features import embeddings, sequences
from ml.features.history import History
from ml.features.names import BRAND_STATS, CATEGORICAL, FEATURE_NAMES, LIFT_ATTRIBUTES, USER_NUMERIC
from ml.features.parsing import date_of

RECENT_DAYS = 90
FIXED_POINT = 1_000_000  # exact_mean: 1e-6 resolution, far below any feature difference that matters
# Interaction kinds (History.interactions.kind).
SEEN, ACTIVATED, REWARDED = 0, 1, 2
# The derived matrices saved with a serving bundle (see `State.derived`).
DERIVED_MATRICES = ("binary", "binary_t", "first_csc", "seen_csc", "activated_csc")


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
    brand_stats: np.ndarray         # n_brands x len(BRAND_STATS)
    category_share: np.ndarray      # n_users x n_categories (receipts)
    spend_share: np.ndarray         # n_users x n_categories, through the brands the user buys at (`spend_categories`)
    brand_seen: sparse.csr_matrix   # user x brand: offers of the brand seen before the cut
    brand_activated: sparse.csr_matrix
    offer_users: OfferUsers         # per offer: who saw / activated / was rewarded
    offers: pl.DataFrame
    merchants: pl.DataFrame
    user_factors: np.ndarray        # n_users x embeddings.FACTORS (ALS), float32
    brand_factors: np.ndarray       # n_brands x embeddings.FACTORS
    mf_top: np.ndarray              # n_users x embeddings.TOP_UNKNOWN: best preferences among unbought brands
    adoptions: sequences.Adoptions  # brand-to-brand transitions and each user's latest adoptions
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
        # Per user: the mean factors of the brands in `adoptions.recent` (first purchases in the
        # sequences.RECENT_DAYS before the cut), and how many there are.
        recent_count = np.diff(self.adoptions.recent.indptr)
        latest = np.asarray(self.adoptions.recent @ self.brand_factors) / np.maximum(recent_count, 1)[:, None]
        self._derived.update(matrices, row_inv=inv, row_nnz=row_nnz,
                             brand_nnz=np.diff(matrices["first_csc"].indptr).astype(np.float32), priors=priors,
                             user_unit=embeddings.normalised(self.user_factors), latest_factors=latest,
                             latest_unit=embeddings.normalised(latest), recent_count=recent_count)

    # --- persistence: the serving bundle is a saved state -------------------------------------------
    # Arrays are .npy files loaded memory-mapped (copy-on-write): the serving process holds them as
    # page cache, which the kernel can drop and read again, not as private memory. Loading the next
    # bundle beside the one that serves therefore does not double the API's memory, and the
    # derived matrices are saved too, so a load computes nothing.

    def _sparse(self) -> dict[str, sparse.spmatrix]:
        derived = self.derived()
        return {"counts": self.counts, "first": self.first, "brand_seen": self.brand_seen,
                "brand_activated": self.brand_activated, "transitions": self.adoptions.transitions,
                "recent_adoptions": self.adoptions.recent, **{name: derived[name] for name in DERIVED_MATRICES}}

    def save(self, out: Path) -> None:
        out = Path(out)
        arrays = out / "arrays"
        arrays.mkdir(parents=True, exist_ok=True)
        frame = self.user_raw.with_columns(pl.Series("user_id", self.user_ids))
        for i, name in enumerate(USER_NUMERIC):
            frame = frame.with_columns(pl.Series(name, self.user_numeric[:, i]))
        frame.write_parquet(out / "users.parquet")
        pl.DataFrame({"brand_dk": self.brand_ids, **{
            name: self.brand_stats[:, i] for i, name in enumerate(BRAND_STATS)}}).write_parquet(
            out / "brands.parquet")
        matrices = self._sparse()
        for name, matrix in matrices.items():
            for part in ("data", "indices", "indptr"):
                np.save(arrays / f"{name}.{part}.npy", getattr(matrix, part))
        np.save(arrays / "category_share.npy", self.category_share)
        np.save(arrays / "spend_share.npy", self.spend_share)
        np.save(arrays / "user_factors.npy", self.user_factors)
        np.save(arrays / "brand_factors.npy", self.brand_factors)
        np.save(arrays / "mf_top.npy", self.mf_top)
        np.save(arrays / "last_adoption.npy", self.adoptions.last)
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
            brand_stats=brands.select(BRAND_STATS).to_numpy().astype(np.float32),
            category_share=array("category_share"), spend_share=array("spend_share"),
            brand_seen=matrix("brand_seen"), brand_activated=matrix("brand_activated"),
            offer_users=OfferUsers(array("offer_users.offer_ids"), array("offer_users.indptr"),
                                   array("offer_users.indices")),
            offers=pl.read_parquet(directory / "offers.parquet"),
            merchants=pl.read_parquet(directory / "merchants.parquet"),
            user_factors=array("user_factors"), brand_factors=array("brand_factors"), mf_top=array("mf_top"),
            adoptions=sequences.Adoptions(transitions=matrix("transitions"), last=array("last_adoption"),
                                          recent=matrix("recent_adoptions")),
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
        # Sorted, then the first of each run of equal cells: a sort is an order of magnitude faster than
        # np.unique on tens of millions of cells.
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


def spend_categories(counts: sparse.csr_matrix, receipts_share: np.ndarray) -> np.ndarray:
    """Each user's category mix as their purchases show it: a brand's profile is the mean receipt mix of
    its customers, a user's the purchase-weighted mean of their brands' profiles. Receipts are few per
    user and transactions many, so this reads a user's tastes from far more events."""
    has_receipts = (receipts_share.sum(axis=1) > 0).astype(np.float32)
    binary = counts.copy()
    binary.data = np.ones_like(binary.data)
    customers = np.asarray(binary.T @ has_receipts).ravel()
    profile = np.asarray(binary.T @ receipts_share) / np.maximum(customers, 1.0)[:, None]
    spend = np.asarray(counts @ profile)
    return (spend / np.maximum(spend.sum(axis=1, keepdims=True), 1e-12)).astype(np.float32)


def state_at(history: History, cut: int, exposure_as_of: int | None = None) -> State:
    """Everything known before `cut`; the offers' own exposure (who saw, activated, was rewarded for
    each offer) is whatever the catalog holds, because serving sees it as it arrives, or, with
    `exposure_as_of` (training and evaluation), what was known on that day: the offers shown up to
    that day (a launch's audience is known on its first day) and activations and rewards before it."""
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
    spend = spend_categories(counts, share)

    seen, activated = (interactions.filter((pl.col("b") >= 0) & (pl.col("kind") == kind)).select("u", "b").collect()
                       for kind in (SEEN, ACTIVATED))
    brand_seen = _csr(n, n_brands, seen["u"].to_numpy(), seen["b"].to_numpy(), np.ones(seen.height, np.float32))
    brand_activated = _csr(n, n_brands, activated["u"].to_numpy(), activated["b"].to_numpy(),
                           np.ones(activated.height, np.float32))
    del seen, activated

    offer_frame = history.interactions.lazy()
    if exposure_as_of is not None:
        known = pl.when(pl.col("kind") == SEEN).then(pl.col("day") <= exposure_as_of).otherwise(
            pl.col("day") < exposure_as_of)
        offer_frame = offer_frame.filter(pl.col("day").is_null() | known)
    offer_users = OfferUsers.build(offer_frame.select("offer_id", "kind", "u"), n)
    user_factors, brand_factors = embeddings.fit(counts, history.user_ids, history.brand_ids)
    mf_top = embeddings.top_unknown(user_factors, brand_factors, counts)
    adoptions = sequences.build(u, b, first_days, n, n_brands, history.min_day, cut)

    user_raw = profile.select(CATEGORICAL)
    lift_codes = {}
    for name in LIFT_ATTRIBUTES:
        # Codes only compare users within this state, so any stable coding will do; missing is a level.
        lift_codes[name] = user_raw[name].fill_null("<missing>").cast(pl.Categorical).to_physical().to_numpy(
        ).astype(np.int32)
    return State(
        cut=int(cut), user_ids=history.user_ids, brand_ids=history.brand_ids, user_raw=user_raw,
        user_numeric=user_numeric, counts=counts, first=first, brand_stats=brand_stats, category_share=share,
        spend_share=spend,
        brand_seen=brand_seen, brand_activated=brand_activated, offer_users=offer_users,
        offers=history.offers, merchants=history.merchants, user_factors=user_factors, brand_factors=brand_factors,
        mf_top=mf_top,
        adoptions=adoptions,
        lift_codes=lift_codes,
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
