"""Each service is the real thing: data goes in and comes back out."""

from __future__ import annotations

import time

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from elasticsearch import Elasticsearch

from cqrskit import Settings
from cqrskit.adapters import kafka as kafka_backend


def test_postgres_stores_and_returns_a_row(pg: psycopg.Connection[tuple[object, ...]]) -> None:
    pg.execute("CREATE TABLE probe (id bigserial PRIMARY KEY, body jsonb NOT NULL)")
    pg.execute("INSERT INTO probe (body) VALUES (%s::jsonb)", ['{"answer": 42}'])
    row = pg.execute("SELECT body->>'answer', pg_backend_pid() FROM probe").fetchone()
    assert row is not None
    assert row[0] == "42"


def test_kafka_delivers_a_message_and_keeps_the_group_offset(
    settings: Settings, kafka_topic: str
) -> None:
    producer = Producer({**kafka_backend.base_config(settings), "acks": "all"})
    delivered = []
    producer.produce(
        kafka_topic, key=b"agg-1", value=b"hello", on_delivery=lambda e, m: delivered.append((e, m))
    )
    assert producer.flush(30) == 0
    assert delivered[0][0] is None

    group = f"{kafka_topic}-group"
    consumer = Consumer(
        {
            **kafka_backend.consumer_config(settings),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([kafka_topic])
        deadline = time.monotonic() + 60
        message = None
        while message is None and time.monotonic() < deadline:
            candidate = consumer.poll(1.0)
            if candidate is not None and candidate.error() is None:
                message = candidate
        assert message is not None, "no message consumed within 60 s"
        assert message.key() == b"agg-1"
        assert message.value() == b"hello"
        consumer.commit(message=message, asynchronous=False)
        committed = consumer.committed(
            [TopicPartition(kafka_topic, message.partition())], timeout=30
        )
        assert committed[0].offset == message.offset() + 1
    finally:
        consumer.close()


def test_elasticsearch_indexes_and_finds_a_document(es: Elasticsearch, es_index: str) -> None:
    es.index(index=es_index, id="order-1", document={"customer": "Ada Lovelace", "total": 12.5})
    es.indices.refresh(index=es_index)
    found = es.search(index=es_index, query={"match": {"customer": "lovelace"}})
    hits = found["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["order-1"]
    assert hits[0]["_source"]["total"] == 12.5
