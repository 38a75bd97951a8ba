"""The running broker holds every topic with its declared settings, and create_topics brings a topic
made with the broker's defaults (7-day retention) to them."""
from __future__ import annotations

import dataclasses
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from adapters.broker import create_topics, declared_topics, topic_configs
from domain.settings import settings

pytestmark = pytest.mark.integration


async def configs_on_broker(config, names):
    admin = AIOKafkaAdminClient(bootstrap_servers=config.broker)
    await admin.start()
    try:
        return await topic_configs(admin, names)
    finally:
        await admin.close()


async def test_the_stack_topics_are_kept_forever(broker_address):
    declared = declared_topics(settings())
    found = await configs_on_broker(settings(), list(declared))
    for name, wanted in declared.items():
        kept = {key: value for key, value in wanted.items() if key in found[name]}  # noida-db has no write.caching
        assert {key: found[name][key] for key in kept} == kept and kept["retention.ms"] == "-1", name


async def test_a_topic_with_the_default_retention_gets_the_declared_one(broker_address):
    config = dataclasses.replace(settings(), deployment=f"retention-{uuid.uuid4().hex[:8]}")
    pipeline = config.topic("pipeline")
    admin = AIOKafkaAdminClient(bootstrap_servers=config.broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(pipeline, 1, 1, topic_configs={"retention.ms": "604800000"})])
    finally:
        await admin.close()
    created = await create_topics(config)
    assert pipeline not in created
    assert (await configs_on_broker(config, [pipeline]))[pipeline]["retention.ms"] == "-1"
    assert await create_topics(config) == []


async def test_fresh_topics_get_every_setting_the_broker_has(broker_address):
    config = dataclasses.replace(settings(), deployment=f"fresh-{uuid.uuid4().hex[:8]}")
    declared = declared_topics(config)
    assert sorted(await create_topics(config)) == sorted(declared)
    found = await configs_on_broker(config, list(declared))
    for name, wanted in declared.items():
        kept = {key: value for key, value in wanted.items() if key in found[name]}
        assert {key: found[name][key] for key in kept} == kept, name
        assert kept["retention.ms"] == "-1" and kept["retention.bytes"] == "-1", name
