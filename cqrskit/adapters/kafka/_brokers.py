"""librdkafka's log lines and errors, folded into one line per change of a broker's state.

Every client cqrskit makes (producer, consumer, admin) hands its log lines
(``logger``), its errors (``error_cb``) and its statistics (``stats_cb``)
to the one :data:`BROKERS` of the process. librdkafka retries a broker it
cannot reach every few hundred milliseconds and says so each time, from
each client; :class:`BrokerStates` writes one WARNING when a broker goes
down (with the cause, as the socket said it), another only if the cause
changes to one not yet said, and one INFO when a client's statistics show
the broker up again. Any other line of librdkafka is written once until a
broker's state changes. The causes it keeps also name the reason in
:func:`~cqrskit.adapters.kafka._errors.unavailable`'s error.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from confluent_kafka import KafkaError

__all__ = ["BROKERS", "BrokerStates", "addresses"]

#: ``[thrd:127.0.0.1:9092/1]: `` — the thread a line came from.
_THREAD = re.compile(r"^\[thrd:[^\]]*\]: ")
#: ``sasl_ssl://host:9093/2: Connect to ... failed: Connection refused (after 0ms in
#: state CONNECT)``: the broker, then what happened to its connection.
_BROKER_LINE = re.compile(
    r"^(?:[A-Za-z_]+://)?(?P<address>[^\s/]+)/(?:\d+|bootstrap|[A-Za-z]+): (?P<text>.+)$"
)
_CONNECT_FAILED = re.compile(r"^Connect to \S+ failed: ")
_AFTER = re.compile(r"\s*\((?:after \d+ms )?in state \w+\)$|\s+in state \w+$")
#: What varies between two otherwise equal lines: counts, times, ids.
_NUMBERS = re.compile(r"\d+")
#: How many different other lines are remembered as said, at most.
_MOST_REMEMBERED = 1000


def addresses(bootstrap: str) -> list[str]:
    """The ``host:port`` of each broker of a bootstrap list, without a ``proto://``."""
    entries = (entry.strip() for entry in bootstrap.split(","))
    return [entry.rpartition("://")[2] for entry in entries if entry]


def _cause(text: str) -> str:
    """``Connect to ipv4#127.0.0.1:9 failed: Connection refused (after 0ms in state
    CONNECT)`` as ``connection refused``."""
    text = _AFTER.sub("", _CONNECT_FAILED.sub("", text.strip()))
    return text[:1].lower() + text[1:]


@dataclass
class _Broker:
    cause: str | None = None
    #: The causes said during the current outage.
    said: set[str] = field(default_factory=set)
    #: When a client last saw it fail (monotonic seconds).
    failed_at: float = float("-inf")


class BrokerStates:
    """The state of every broker the process's Kafka clients talk to, and the one log of them.

    Pass it as a client's ``logger`` (it has the ``log`` method
    confluent-kafka calls), :meth:`error` as its ``error_cb`` and
    :meth:`stats` as its ``stats_cb``. Thread-safe: librdkafka serves these
    from whichever thread polls the client.
    """

    def __init__(self, log: logging.Logger, clock: Callable[[], float] = time.monotonic):
        self._log = log
        #: Where librdkafka's other lines go, as ``FACILITY [client] text``.
        self._other_log = log.getChild("librdkafka")
        self._clock = clock
        self._lock = threading.Lock()
        self._brokers: dict[str, _Broker] = {}
        #: Other lines of librdkafka written since the last change of a broker's state.
        self._said: set[str] = set()

    # -- what librdkafka calls ------------------------------------------------------

    def log(self, level: int, _format: str, *args: object) -> None:
        """A log line of librdkafka: ``(facility, client name, text)``."""
        facility, client, text = (str(a) for a in (*args, "", "", "")[:3])
        text = _THREAD.sub("", text)
        if facility == "FAIL" and self._failed(text):
            return
        self._other(level, facility, client, text)

    def error(self, error: KafkaError) -> None:
        """An error of a client (its ``error_cb``)."""
        code = error.code()
        if code == KafkaError._ALL_BROKERS_DOWN:
            return  # each broker's own line said why
        text = str(error.str())
        if code == KafkaError._TRANSPORT and self._failed(text):
            return
        level = logging.ERROR if error.fatal() else logging.WARNING
        self._other(level, "FATAL" if error.fatal() else "ERROR", str(error.name()), text)

    def stats(self, raw: str) -> None:
        """A client's statistics: a broker reported up is up again."""
        try:
            brokers = orjson.loads(raw).get("brokers") or {}
        except (orjson.JSONDecodeError, AttributeError):
            return
        for name, broker in brokers.items():
            if isinstance(broker, dict) and broker.get("state") == "UP":
                self.up(str(broker.get("nodename") or name.split("/")[0]))

    # -- states --------------------------------------------------------------------

    def _failed(self, text: str) -> bool:
        """A broker's connection failed: write it if the state or cause is new; False if
        ``text`` names no broker."""
        match = _BROKER_LINE.match(text)
        if match is None:
            return False
        address, cause = match["address"], _cause(match["text"])
        with self._lock:
            broker = self._brokers.setdefault(address, _Broker())
            broker.failed_at = self._clock()
            was_up = broker.cause is None
            broker.cause = cause
            if cause in broker.said:
                return True
            broker.said.add(cause)
            self._said.clear()
        if was_up:
            self._log.warning(
                "Kafka broker %s is unreachable: %s", address, cause, extra={"broker": address}
            )
        else:
            self._log.warning(
                "Kafka broker %s is still unreachable, now: %s",
                address,
                cause,
                extra={"broker": address},
            )
        return True

    def up(self, address: str) -> None:
        """``address`` answered a client: write so once if it was down."""
        with self._lock:
            broker = self._brokers.get(address)
            if broker is None or broker.cause is None:
                return
            broker.cause = None
            broker.said.clear()
            self._said.clear()
        self._log.info("Kafka broker %s is reachable again", address, extra={"broker": address})

    def _other(self, level: int, facility: str, client: str, text: str) -> None:
        key = f"{facility} {_NUMBERS.sub('N', text)}"
        with self._lock:
            if key in self._said:
                return
            if len(self._said) >= _MOST_REMEMBERED:
                self._said.clear()  # a process up for months says an old line again
            self._said.add(key)
        self._other_log.log(level, "%s [%s] %s", facility, client, text)

    def cause(self, bootstrap: str) -> str | None:
        """Why the brokers of ``bootstrap`` are unreachable, if a client saw them fail
        and none came back since; None if no cause is known."""
        with self._lock:
            causes = {
                address: broker.cause
                for address in addresses(bootstrap)
                if (broker := self._brokers.get(address)) and broker.cause
            }
        if len(set(causes.values())) <= 1:
            return next(iter(causes.values()), None)
        return "; ".join(f"{address}: {cause}" for address, cause in causes.items())

    def down_since(self, bootstrap: str, seconds: float) -> str | None:
        """The cause, if every broker of ``bootstrap`` is down and failed within ``seconds``."""
        now = self._clock()
        with self._lock:
            brokers = [self._brokers.get(a) for a in addresses(bootstrap)]
            if not brokers or not all(
                b is not None and b.cause and now - b.failed_at <= seconds for b in brokers
            ):
                return None
        return self.cause(bootstrap)


#: Every Kafka client of the process reports here.
BROKERS = BrokerStates(logging.getLogger("cqrskit.kafka"))
