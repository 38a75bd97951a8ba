"""Create what the processes expect to exist: the topics and the bucket. Idempotent.
Run: `python -m adapters.provision`."""
from __future__ import annotations

import asyncio
import logging
import time

from adapters.broker import create_topics
from adapters.storage import ObjectStore
from domain.settings import settings


def main(attempts: int = 60) -> None:
    logging.basicConfig(level=logging.INFO)
    config = settings()
    for attempt in range(attempts):
        try:
            created = asyncio.run(create_topics(config))
            ObjectStore(config).ensure_bucket()
            logging.info("provisioned: topics created %s, bucket %s", created, config.s3_bucket)
            return
        except Exception as error:
            logging.warning("provision attempt %d failed: %s", attempt + 1, error)
            time.sleep(2)
    raise SystemExit("could not provision the broker and the bucket")


if __name__ == "__main__":
    main()
