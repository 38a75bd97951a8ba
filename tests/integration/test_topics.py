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
        assert {key: found[name][key] for key in wanted} == wanted, name


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
