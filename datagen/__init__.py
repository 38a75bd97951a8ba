"""Deterministic generator of data versions with real structure, and the HTTP sender.

`generate_series(out_dir, scale, seed, scenarios, mode, visibility=0.0, targeting=1.0)` writes v1,
v2, ... as typed parquet directories (the snapshot layout of docs/design.md: `{table}.parquet` typed
as `domain.tables.TABLES`, plus `manifest.json` {"version", "scenario", "mode", "scale", "seed",
"visibility", "targeting", "cut_date", "first_date", "tables": {t: {"rows"}}, optional
"drop_batches" and "corruption"}) with their held-out future in `_holdout/`:

- `offer.parquet`: the held-out offers, each (offer_id, merchant_id_offer) once, with a `kind`:
  `fresh` (starting in the month right after the cut), `running` (started before the cut, ending
  after it: their seens and their activations up to the cut are delivered) and `far` (announced in
  the version, starting two months or more after the cut). All are in the offer table of the
  versions so far (as the checker's hidden offers are), their merchants in the merchant table;
- `transaction.parquet`: the next FUTURE_MONTHS (5) months of transactions of the clients known at
  the cut, never sent; ground truth = `ml.ground_truth.offers_ground_truth(past + these, ...)`, so
  every window is clipped to that horizon;
- `oracle.parquet` (offer_id, merchant_id_offer, user_id, probability float32): the generator's own
  probability that each known client becomes a new customer of the offer inside its (clipped) window,
  given everything the world holds at the cut (datagen/oracle.py): 0 for existing customers, 1 for a
  running offer's converts so far. At `full` scale only the top 5000 clients per offer are written.

Timeline: v1 holds 2024-06-01 .. 2025-05-31 (cut 2025-06-01, held-out offers start in June 2025);
each later version adds one month (v2: June 2025, cut 2025-07-01, ...). A version's activations are
those dated before its cut. See world.py for the behavioural model and the knobs, scenarios.py for
the scenario kinds; `python -m datagen --help` for the CLI.
"""
from datagen.scenarios import ALL as SCENARIOS
from datagen.series import generate_series

__all__ = ["generate_series", "SCENARIOS"]
