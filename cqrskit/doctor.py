"""Health of the three services, for ``cqrskit doctor`` and for start-up checks."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cqrskit.adapters import elasticsearch, kafka, postgres
from cqrskit.adapters._probe import ServiceInfo
from cqrskit.errors import ServiceUnavailable
from cqrskit.settings import Settings

__all__ = ["ServiceCheck", "check_services"]

_START_HINT = "start the local services with 'cqrskit services up'"


@dataclass(frozen=True)
class ServiceCheck:
    """The outcome of checking one service."""

    service: str
    variable: str
    address: str
    ok: bool
    version: str = ""
    detail: str = ""
    hint: str = ""


_Probe = tuple[str, str, Callable[[Settings], ServiceInfo], Callable[[Settings], str]]

_PROBES: tuple[_Probe, ...] = (
    (postgres.SERVICE, postgres.VARIABLE, postgres.probe, lambda s: s.postgres_address()),
    (kafka.SERVICE, kafka.VARIABLE, kafka.probe, lambda s: s.kafka_bootstrap),
    (
        elasticsearch.SERVICE,
        elasticsearch.VARIABLE,
        elasticsearch.probe,
        lambda s: s.elasticsearch_address(),
    ),
)


def check_services(settings: Settings) -> list[ServiceCheck]:
    """Probe PostgreSQL, Kafka and Elasticsearch at once; never raises.

    Each probe waits at most ``settings.connect_timeout``; the three run in
    parallel, so a machine with every service down answers in one timeout.
    """

    def run(entry: _Probe) -> ServiceCheck:
        service, variable, probe, address = entry
        try:
            info = probe(settings)
        except ServiceUnavailable as exc:
            hint = f"{_START_HINT}, or set {variable} to a reachable server"
            return ServiceCheck(service, variable, address(settings), False, "", exc.reason, hint)
        return ServiceCheck(service, variable, info.address, True, info.version, info.detail)

    with ThreadPoolExecutor(max_workers=len(_PROBES)) as pool:
        return list(pool.map(run, _PROBES))
