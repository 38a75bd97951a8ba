"""The servable model: the deployed model over the current catalog's bundle, loaded in memory.

CatalogPublished and ModelDeployed only say what should be served; a loader task fetches the
files and swaps the scorer in one assignment, always for the newest pair (during a replay the
intermediate pairs are skipped, not loaded one after another).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from adapters.storage import ObjectStore, prune_local_copies
from domain import events, layout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Servable:
    bundle_prefix: str
    catalog_version: str
    model_key: str
    model_version: str
    trained_on: str


@dataclass(frozen=True)
class LoadedModel:
    servable: Servable
    scorer: object  # ml.serving.Scorer


class ServingModel:
    def __init__(self, store: ObjectStore, cache_dir: Path):
        self.store = store
        self.cache_dir = cache_dir
        self.catalog: events.CatalogPublished | None = None
        self.model: events.ModelDeployed | None = None
        self.loaded: LoadedModel | None = None
        self.load_error: str | None = None
        self._wanted = asyncio.Event()
        self._task: asyncio.Task | None = None

    def apply(self, event: events.Event) -> None:
        if isinstance(event, events.CatalogPublished):
            self.catalog = event
        elif isinstance(event, events.ModelDeployed):
            self.model = event
        else:
            return
        self.load_error = None  # a new pair to load: an earlier failure says nothing about it
        self._wanted.set()

    def wanted(self) -> Servable | None:
        if self.catalog is None or self.model is None:
            return None
        return Servable(bundle_prefix=layout.bundle(self.catalog.catalog_prefix), catalog_version=self.catalog.version,
                        model_key=self.model.model_key, model_version=self.model.model_version,
                        trained_on=self.model.trained_on)

    def loading(self) -> bool:
        """A newer catalog or model is wanted than the one loaded (and its last load did not fail)."""
        wanted = self.wanted()
        return wanted is not None and self.load_error is None and (self.loaded is None or self.loaded.servable != wanted)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loader(), name="serving-model-loader")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loader(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            await asyncio.sleep(0.2)  # let a replay run ahead: load only the newest pair
            if self._wanted.is_set():
                continue
            wanted = self.wanted()
            if wanted is None or (self.loaded and self.loaded.servable == wanted):
                continue
            try:
                scorer = await asyncio.to_thread(self._load, wanted)
                self.loaded = LoadedModel(wanted, scorer)
                self.load_error = None
                log.info("serving model %s on catalog %s", wanted.model_version, wanted.catalog_version)
                # Only the served pair stays on disk. Requests still scoring with the previous one keep
                # reading its memory-mapped files: a deleted file lives on while it is mapped.
                await asyncio.to_thread(prune_local_copies, self.cache_dir / "bundles", {wanted.catalog_version})
                await asyncio.to_thread(prune_local_copies, self.cache_dir / "models", {wanted.model_version})
            except Exception as error:  # keep serving what was loaded before
                log.exception("could not load %s", wanted)
                self.load_error = f"{type(error).__name__}: {error}"

    def _load(self, wanted: Servable):
        from ml.serving import Scorer

        bundle = self.store.get_dir(wanted.bundle_prefix, self.cache_dir / "bundles" / wanted.catalog_version)
        model_dir = self.store.get_dir(wanted.model_key, self.cache_dir / "models" / wanted.model_version)
        return Scorer(bundle, layout.model_file(model_dir))
