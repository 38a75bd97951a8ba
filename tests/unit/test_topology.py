"""Every topic is declared with the settings that keep it replayable: nothing ages out of the log."""
from adapters.broker import declared_topics
from domain import topology
from domain.settings import Settings


def test_every_topic_is_kept_forever():
    for topic in topology.TOPICS + topology.FAUST_INTERNAL:
        config = dict(topic.config)
        assert config["retention.ms"] == "-1" and config["retention.bytes"] == "-1", topic.name
        # Redpanda acknowledges a write before its fsync while write caching is on.
        assert config["write.caching"] == "false", topic.name


def test_only_table_changelogs_are_compacted():
    """A changelog needs each key's latest value only; the event topics are histories, never compacted."""
    for topic in topology.TOPICS:
        assert dict(topic.config)["cleanup.policy"] == "delete", topic.name
    changelogs = [t for t in topology.FAUST_INTERNAL if t.name.endswith("-changelog")]
    assert {t.name for t in changelogs} == {f"processors-{table}-changelog" for table in topology.FAUST_TABLES}
    assert all(dict(t.config)["cleanup.policy"] == "compact" for t in changelogs)


def test_declared_topics_carry_the_broker_names_the_processes_use():
    config = Settings(deployment="d1", broker="", s3_endpoint=None, s3_bucket="b", mlflow_uri="", work_dir=None,
                      port=0, params={})
    declared = declared_topics(config)
    assert set(declared) == {f"d1.{t.name}" for t in topology.TOPICS} | {
        f"d1-{t.name}" for t in topology.FAUST_INTERNAL}
    assert declared["d1.ingest.data"]["retention.ms"] == "-1"
