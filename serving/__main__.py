"""Run the API: `python -m serving` (port from PORT)."""
import logging
import os

# Polars' allocator (jemalloc) keeps freed pages for reuse. Read when polars loads (with the app, below),
# this returns pages unused for a second: while batches keep arriving they are reused, and after a
# burst the API shrinks back to what it holds. Measured on the small version over HTTP: the API kept
# 335 MB after the run without it, 163 MB with it, for 15% more CPU per batch (returning them at once,
# as the pipeline's stages do, cost 50% more CPU).
API_ALLOCATOR = {"_RJEM_MALLOC_CONF": "dirty_decay_ms:1000,muzzy_decay_ms:1000"}
os.environ.update(API_ALLOCATOR)

import uvicorn  # noqa: E402

from domain.settings import settings  # noqa: E402

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # limit_concurrency: connections (and SSE streams) beyond it are answered 503 rather than held.
    uvicorn.run("serving.app:app", host="0.0.0.0", port=settings().port, log_level="info",
                access_log=False, timeout_keep_alive=30,
                limit_concurrency=int(settings().params["http"]["max_connections"]))
