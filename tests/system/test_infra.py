"""Smoke test of the infra fixture alone: real PostgreSQL and Kafka answer."""

import uuid

from harness import run


def test_postgres_answers(infra):
    assert infra.psql("select 1") == "1"
    assert infra.scalar("show max_connections") == "200"
    assert infra.scalar("show fsync") == "on"


def test_create_database(infra):
    name = f"t_smoke_{uuid.uuid4().hex[:8]}"
    infra.create_database(name)
    try:
        assert infra.psql("select current_database()", db=name) == name
    finally:
        infra.drop_database(name)


def test_kafka_metadata(infra):
    md = infra.kafka_metadata()
    assert [b["id"] for b in md["brokers"]] == [1]


def test_kafka_round_trip(infra):
    topic = f"smoke.{uuid.uuid4().hex[:8]}"
    infra.create_topic(topic, partitions=4)
    assert infra.topics()[topic] == 4
    infra.produce(topic, ["k1:v1", "k2:v2"], key_delim=":")
    msgs = infra.consume(topic, timeout=10)
    assert sorted((m["key"], m["payload"]) for m in msgs) == [("k1", "v1"), ("k2", "v2")]


def test_no_auto_create(infra):
    # auto.create.topics.enable=false: producing to an unknown topic fails
    topic = f"smoke.{uuid.uuid4().hex[:8]}"
    cp = run(["kcat", "-b", infra.brokers, "-P", "-t", topic, "-X", "message.timeout.ms=2000"],
             input="hello\n", timeout=20, check=False)
    assert cp.returncode != 0 or topic not in infra.topics()
    assert topic not in infra.topics()


def test_pg_restart(infra):
    infra.pg_restart()
    assert infra.psql("select 1") == "1"


def test_kafka_stop_start(infra):
    topic = f"smoke.{uuid.uuid4().hex[:8]}"
    infra.create_topic(topic, partitions=1)
    infra.produce(topic, ["before"])
    infra.kafka_stop(hard=True)
    cp = run(["kcat", "-b", infra.brokers, "-L", "-m", "2"], timeout=10, check=False)
    assert cp.returncode != 0
    infra.kafka_start()
    assert [m["payload"] for m in infra.consume(topic)] == ["before"]
