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
from contextlib import contextmanager

from confluent_kafka import KafkaError, KafkaException

from cqrskit.errors import PermanentError, ServiceUnavailable

__all__ = ["SERVICE", "VARIABLE", "describe_error", "not_yet", "translated", "unavailable"]

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


def unavailable(address: str, reason: str) -> ServiceUnavailable:
    """Kafka at ``address`` did not answer, for ``reason``."""
    return ServiceUnavailable(SERVICE, address, reason, VARIABLE)


@contextmanager
def translated(address: str, doing: str = "", *, refusals: bool = False) -> Iterator[None]:
    """Re-raise Kafka's errors into cqrskit's tree.

    Every ``KafkaException`` and ``TimeoutError`` becomes ServiceUnavailable,
    unless ``refusals`` is set: then an error that is not the cluster being
    away (:func:`not_yet`) is a PermanentError naming what we were ``doing``.
    """
    try:
        yield
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if refusals and isinstance(error, KafkaError) and not not_yet(error):
            raise PermanentError(f"cannot {doing or 'do that'}: {error.str()}") from exc
        reason = describe_error(exc)
        raise unavailable(address, f"{doing}: {reason}" if doing else reason) from exc
    except TimeoutError as exc:
        what = f"no answer {doing}" if doing else "no broker answered in time"
        raise unavailable(address, what) from exc
