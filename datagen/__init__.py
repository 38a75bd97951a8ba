"""Deterministic generator of data versions with real structure, and the HTTP sender.

`generate_series(out_dir, scale, seed, scenarios, mode)` writes v1, v2, ... as typed parquet
directories (the snapshot layout of docs/design.md: `{table}.parquet` typed as
`domain.tables.TABLES`, plus `manifest.json` {"version", "scenario", "mode", "scale", "seed",
"cut_date", "first_date", "tables": {t: {"rows"}}, optional "drop_batches" and "corruption"}) with
their held-out future in `_holdout/`:

- `offer.parquet`: offers starting at/after the cut (they also appear in the version's offer table,
  like the checker's hidden offers; their merchants are in the version's merchant table);
- `transaction.parquet`: the next HOLDOUT_MONTHS (2) months of transactions of the clients known
  at the cut, never sent; ground truth = `ml.ground_truth.offers_ground_truth(past + these, ...)`;
- `oracle.parquet` (offer_id, merchant_id_offer, user_id, probability float32): the generator's
  own probability that each known client becomes a new customer of the offer inside the window
  (clipped to the held-out horizon); 0 for existing customers. At `full` scale only the top 5000
  clients per offer are written.

Timeline: v1 holds 2024-06-01 .. 2025-05-31 (cut 2025-06-01, held-out offers start in June 2025);
each later version adds one month (v2: June 2025, cut 2025-07-01, ...). See world.py for the
behavioural model and scenarios.py for the scenario kinds; `python -m datagen --help` for the CLI.
"""
from datagen.scenarios import ALL as SCENARIOS
from datagen.series import generate_series

__all__ = ["generate_series", "SCENARIOS"]
