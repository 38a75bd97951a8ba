"""Reading a whole topic of one deployment, as events in log order."""
from __future__ import annotations

from adapters.broker import Follower
from domain import events
from domain.settings import Settings


async def read_topic(config: Settings, topic: str) -> list[tuple[int, events.Event]]:
    """Every event on the topic now, with its offset (one pass with the projections' own Follower)."""
    found: list[tuple[int, events.Event]] = []
    follower = Follower(config, topic, lambda offset, payload, key: found.append((offset, events.from_bytes(payload))))
    await follower.start(from_offset=0)
    try:
        await follower.catch_up()
    finally:
        await follower.stop()
    return found
