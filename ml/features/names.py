"""The feature registry: every model input by name, in the order the model's matrix holds them.

Each block is built by one function of `ml.features.offer` and looked up by name (`FEATURE_INDEX`),
never by its position in a list.
"""
from __future__ import annotations

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
# Per-brand statistics stored in a state (and its bundle).
BRAND_STATS = [
    "brand_customers_log", "brand_new_30d_log", "brand_new_90d_log", "brand_growth_30d",
    "brand_new_rate_90d", "brand_price_level", "brand_online_share", "brand_repeat_rate",
    "brand_merchants",
]
BRAND_FEATURES = [*BRAND_STATS, "brand_known"]
PAIR_FEATURES = [
    "brand_affinity", "recent_converts_affinity", "item_cf_mean", "item_cf_max", "item_cf_sum",
    "category_affinity", "category_lift", "spend_category_lift", "price_gap", "online_gap",
    *[f"{a}_lift" for a in LIFT_ATTRIBUTES], "segment_lift_recent",
]
# Learnt user and brand embeddings (ALS over the user x brand matrix): the user's predicted preference
# for the brand, and the user's similarity to the brand's customers, to its recent new customers (the
# seed audience) and to the offer's own converts so far (users who already answered this offer).
# mf_rank: how many of the user's best unbought brands the user prefers to this one (a user walks to
# the best-fitting brands they do not know yet first); mf_margin: the preference's distance to the best;
# mf_recent_gap, mf_recent_similarity: the brand against the user's latest adoptions (how far down their
# own order the user has come: the next brands sit just past the latest ones).
EMBEDDING_FEATURES = ["mf_score", "mf_rank", "mf_margin", "mf_customers_similarity", "mf_seed_similarity",
                      "mf_window_converts_similarity", "mf_recent_gap", "mf_recent_similarity"]
# What the user's latest adoptions say about the brand being next (ml.features.sequences).
SEQUENCE_FEATURES = ["next_after_last", "next_after_recent"]
# The offer itself, and where the scoring day sits in its window: days until its start (negative once
# it runs) and days of window still ahead.
OFFER_FEATURES = [
    "offer_duration_days", "offer_start_month", "offer_start_weekday", "offer_text_words",
    "offer_text_missing", "offer_text_online", "offer_gap_days", "offer_days_ahead",
]
# What the data says about this offer's exposure so far: the user's own (seen, activated, rewarded),
# the brand's earlier offers, and the offer's reach and response as a whole.
EXPOSURE_FEATURES = [
    "offer_seen", "offer_activated", "offer_rewarded", "brand_offers_seen", "brand_offers_activated",
    "offer_seen_users_log", "offer_activation_share", "offer_window_converts_log",
]
FEATURE_NAMES = [*CATEGORICAL, *USER_NUMERIC, *BRAND_FEATURES, *PAIR_FEATURES, *EMBEDDING_FEATURES,
                 *SEQUENCE_FEATURES, *OFFER_FEATURES, *EXPOSURE_FEATURES]
FEATURE_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}
USER_INDEX = {name: i for i, name in enumerate(USER_NUMERIC)}
BRAND_INDEX = {name: i for i, name in enumerate(BRAND_STATS)}
