"""Kafka's errors, translated into cqrskit's tree in one place.

confluent-kafka raises ``KafkaException`` carrying a ``KafkaError``;
futures of the admin client raise it too, or ``TimeoutError`` when no answer
came. A cluster that is away or still starting becomes
:class:`~cqrskit.errors.ServiceUnavailable`; a refusal that retrying cannot
change (a bad topic name, too many replicas) becomes
:class:`~cqrskit.errors.PermanentError`. Both are raised ``from`` the
driver's error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException

from cqrskit.adapters.kafka._brokers import BROKERS
from cqrskit.errors import PermanentError, ServiceUnavailable

__all__ = [
    "SERVICE",
    "VARIABLE",
    "describe_error",
    "not_yet",
    "serve_logs",
    "translated",
    "unavailable",
]

SERVICE = "Kafka"
VARIABLE = "CQRSKIT_KAFKA_BOOTSTRAP"

# Errors of a cluster that is away or still starting (a controller not yet
# elected answers with a local time-out): retrying helps.
_NOT_YET = {
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NOT_CONTROLLER,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
}


def describe_error(exc: BaseException) -> str:
    """librdkafka's own words for ``exc``, without the KafkaError wrapper."""
    if isinstance(exc, KafkaException) and exc.args:
        error = exc.args[0]
        text = error.str() if hasattr(error, "str") else str(error)
        return str(text)
    return str(exc) or "no broker answered in time"


def not_yet(error: KafkaError) -> bool:
    """True when ``error`` is the cluster being away or still starting."""
    return bool(error.retriable()) or error.code() in _NOT_YET


def unavailable(address: str, reason: str, doing: str = "") -> ServiceUnavailable:
    """Kafka at ``address`` did not answer while ``doing`` something, for ``reason``.

    When a client of the process saw the brokers fail, their cause (as the
    socket said it: "connection refused") stands in for ``reason``, which is
    then only librdkafka's summary ("Local: Broker transport failure").
    """
    said = BROKERS.cause(address) or reason
    return ServiceUnavailable(
        SERVICE, address, f"{said} while {doing}" if doing else said, VARIABLE
    )


class _Polled(Protocol):
    def poll(self, timeout: float) -> object: ...


def serve_logs(client: _Polled | None) -> None:
    """Serve what ``client`` queued (its log lines, errors, statistics); best effort.

    librdkafka queues them for the next ``poll``: a call that failed has not
    yet told :data:`BROKERS` why. Never pass a consumer with partitions: its
    poll would take a message.
    """
    if client is not None:
        with suppress(KafkaException, RuntimeError):
            client.poll(0)


@contextmanager
def translated(
    address: str, doing: str = "", *, refusals: bool = False, client: _Polled | None = None
) -> Iterator[None]:
    """Re-raise Kafka's errors into cqrskit's tree.

    Every ``KafkaException`` and ``TimeoutError`` becomes ServiceUnavailable,
    unless ``refusals`` is set: then an error that is not the cluster being
    away (:func:`not_yet`) is a PermanentError naming what we were ``doing``.
    The ``client`` that failed is served first (:func:`serve_logs`), so that
    the error names the cause its brokers gave.
    """
    try:
        yield
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if refusals and isinstance(error, KafkaError) and not not_yet(error):
            raise PermanentError(f"cannot {doing or 'do that'}: {error.str()}") from exc
        serve_logs(client)
        raise unavailable(address, describe_error(exc), doing) from exc
    except TimeoutError as exc:
        serve_logs(client)
        raise unavailable(address, "no broker answered in time", doing) from exc
