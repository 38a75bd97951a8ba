"""Run the API: `python -m serving` (port from PORT)."""
import logging

import uvicorn

from domain.settings import settings

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run("serving.app:app", host="0.0.0.0", port=settings().port, log_level="info",
                access_log=False, timeout_keep_alive=30)
