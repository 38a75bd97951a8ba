"""`python -m bootstrap provision | worker [faust options] | pipeline | api`: see bootstrap/__init__.py."""
from __future__ import annotations

import asyncio
import sys

import bootstrap
from domain.settings import settings

PROCESSES = ("provision", "worker", "pipeline", "api")


def main() -> None:
    process = sys.argv[1] if len(sys.argv) > 1 else ""
    if process not in PROCESSES:
        raise SystemExit(f"usage: python -m bootstrap {{{','.join(PROCESSES)}}} [options]")
    if process == "worker":
        bootstrap.worker()  # Faust sets up its own logging and parses sys.argv[1:]: "worker" and its options
        return
    bootstrap.configure_logging()
    if process == "provision":
        bootstrap.provision(settings())
    elif process == "pipeline":
        asyncio.run(bootstrap.run_pipeline(settings()))
    else:
        bootstrap.api(settings())


if __name__ == "__main__":
    main()
