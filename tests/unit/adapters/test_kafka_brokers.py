"""librdkafka's lines, folded into one line per change of a broker's state."""

from __future__ import annotations

import logging

import orjson
import pytest
from confluent_kafka import KafkaError

from cqrskit.adapters.kafka._brokers import BrokerStates, addresses
from cqrskit.adapters.kafka._errors import unavailable

REFUSED = (
    "[thrd:127.0.0.1:9/bootstrap]: 127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 "
    "failed: Connection refused (after 0ms in state CONNECT)"
)
DISCONNECTED = "[thrd:127.0.0.1:9/1]: 127.0.0.1:9/1: Disconnected (after 5012ms in state UP)"


def fail(states: BrokerStates, text: str) -> None:
    states.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", text)


def stats(states: BrokerStates, state: str) -> None:
    raw = {"brokers": {"127.0.0.1:9/1": {"state": state, "nodename": "127.0.0.1:9"}}}
    states.stats(orjson.dumps(raw).decode())


@pytest.fixture
def states(caplog: pytest.LogCaptureFixture) -> BrokerStates:
    caplog.set_level(logging.DEBUG, logger="test.kafka")
    return BrokerStates(logging.getLogger("test.kafka"))


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("test.")]


def test_a_broker_retried_many_times_is_one_warning_with_its_cause(
    states: BrokerStates, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(100):
        fail(states, REFUSED)
        states.error(KafkaError(KafkaError._TRANSPORT, REFUSED.split("]: ", 1)[1]))
        states.error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
        stats(states, "INIT")
    assert lines(caplog) == [
        ("WARNING", "Kafka broker 127.0.0.1:9 is unreachable: connection refused")
    ]
    assert states.cause("127.0.0.1:9") == "connection refused"


def test_a_new_cause_is_said_once_and_a_broker_back_up_once(
    states: BrokerStates, caplog: pytest.LogCaptureFixture
) -> None:
    fail(states, DISCONNECTED)
    for _ in range(5):
        fail(states, REFUSED)
        fail(states, DISCONNECTED)
    for _ in range(5):
        stats(states, "UP")
    fail(states, REFUSED)
    assert lines(caplog) == [
        ("WARNING", "Kafka broker 127.0.0.1:9 is unreachable: disconnected"),
        ("WARNING", "Kafka broker 127.0.0.1:9 is still unreachable, now: connection refused"),
        ("INFO", "Kafka broker 127.0.0.1:9 is reachable again"),
        ("WARNING", "Kafka broker 127.0.0.1:9 is unreachable: connection refused"),
    ]


def test_other_lines_are_said_once_until_a_broker_changes_state(
    states: BrokerStates, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(3):
        states.log(
            logging.WARNING, "%s [%s] %s", "REQTMOUT", "rdkafka#producer-1", f"{n} timed out"
        )
    fail(states, REFUSED)
    states.log(logging.WARNING, "%s [%s] %s", "REQTMOUT", "rdkafka#producer-1", "7 timed out")
    assert [line for _, line in lines(caplog)] == [
        "REQTMOUT [rdkafka#producer-1] 0 timed out",
        "Kafka broker 127.0.0.1:9 is unreachable: connection refused",
        "REQTMOUT [rdkafka#producer-1] 7 timed out",
    ]


def test_the_error_of_an_unreachable_cluster_names_the_cause_the_broker_gave(
    states: BrokerStates, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cqrskit.adapters.kafka._errors.BROKERS", states)
    fail(states, REFUSED)
    error = unavailable("127.0.0.1:9", "Local: Broker transport failure", "reading the lag")
    assert str(error) == (
        "Kafka is unreachable at 127.0.0.1:9 (connection refused while reading the lag); "
        "check CQRSKIT_KAFKA_BOOTSTRAP"
    )
    stats(states, "UP")
    again = unavailable("127.0.0.1:9", "Local: Broker transport failure")
    assert again.reason == "Local: Broker transport failure"


def test_bootstrap_lists_name_each_broker_without_its_protocol() -> None:
    assert addresses("SASL_SSL://a:9093, b:9092,") == ["a:9093", "b:9092"]
