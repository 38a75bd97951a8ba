"""Features of (user, offer) pairs, computed by one code path for training cuts, the hold-out and serving.

- `names`: the feature registry (every model input by name);
- `parsing`: days, range strings, flags and texts as numbers;
- `history`: the catalog loaded once (`History`, `load_history`);
- `state`: what was known at a cut day (`State`, `state_at`), and the serving bundle's format;
- `embeddings`: ALS user and brand factors over the purchase matrix;
- `offer`: the feature matrix of one offer for a set of users (`offer_features`).
"""
from ml.features.history import History, load_history
from ml.features.names import (
    BRAND_FEATURES,
    BRAND_STATS,
    CATEGORICAL,
    FEATURE_INDEX,
    FEATURE_NAMES,
    LIFT_ATTRIBUTES,
    USER_INDEX,
    USER_NUMERIC,
)
from ml.features.offer import OfferSpec, brand_column, customers_before, non_customers, offer_features, offer_groups
from ml.features.parsing import EPOCH, OPEN_END_DAY, date_of, day_of
from ml.features.state import (
    ACTIVATED,
    REWARDED,
    SEEN,
    OfferUsers,
    State,
    categorical_levels,
    encode_categoricals,
    exact_mean,
    state_at,
)

__all__ = [
    "ACTIVATED", "BRAND_FEATURES", "BRAND_STATS", "CATEGORICAL", "EPOCH", "FEATURE_INDEX", "FEATURE_NAMES",
    "LIFT_ATTRIBUTES", "OPEN_END_DAY", "REWARDED", "SEEN", "USER_INDEX", "USER_NUMERIC", "History", "OfferSpec",
    "OfferUsers", "State", "brand_column", "categorical_levels", "customers_before", "date_of", "day_of",
    "encode_categoricals", "exact_mean", "load_history", "non_customers", "offer_features", "offer_groups", "state_at",
]
