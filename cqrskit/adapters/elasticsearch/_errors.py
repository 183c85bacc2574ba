"""Elasticsearch's errors, translated into cqrskit's tree in one place.

The client raises ``TransportError`` (``ConnectionError``,
``ConnectionTimeout``) when no answer came, and ``ApiError`` with the HTTP
status when one did. No answer, 429 (too many requests) and 5xx become
:class:`~cqrskit.errors.ServiceUnavailable`; any other status is a refusal
that retrying cannot change, :class:`~cqrskit.errors.PermanentError`. Both
are raised ``from`` the driver's error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from elasticsearch import ApiError, TransportError

from cqrskit.errors import PermanentError, ServiceUnavailable

__all__ = ["SERVICE", "VARIABLE", "busy", "reason_of", "translated", "unavailable"]

SERVICE = "Elasticsearch"
VARIABLE = "CQRSKIT_ELASTICSEARCH_URL"


def reason_of(exc: Exception) -> str:
    """The most specific words of a transport error: its cause's, if it has one."""
    cause = exc.__cause__ or exc.__context__
    text = str(cause) if cause is not None else str(exc)
    # urllib3 prefixes "HTTPConnection(host=..., port=...): " which we print anyway.
    return text.split("): ", 1)[-1] or type(exc).__name__


def busy(exc: ApiError) -> bool:
    """True when the cluster answered but is overloaded or failing (429, 5xx)."""
    return bool(exc.meta.status == 429 or exc.meta.status >= 500)


def unavailable(address: str, reason: str) -> ServiceUnavailable:
    """Elasticsearch at ``address`` did not answer, for ``reason``."""
    return ServiceUnavailable(SERVICE, address, reason, VARIABLE)


@contextmanager
def translated(address: str, doing: str) -> Iterator[None]:
    """Re-raise Elasticsearch's errors into cqrskit's tree.

    ``doing`` names the call ("search read model 'orders'") in both the
    ServiceUnavailable's reason and the PermanentError's message.
    """
    try:
        yield
    except TransportError as exc:
        raise unavailable(address, f"{doing}: {exc}") from exc
    except ApiError as exc:
        if busy(exc):
            raise unavailable(address, f"{doing}: {exc}") from exc
        raise PermanentError(f"cannot {doing}: {exc}") from exc
