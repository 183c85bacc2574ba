"""The event store read in commit order, in memory: the second ``StoredEvents``.

For tests of rebuilds and verification without PostgreSQL: envelopes are
appended in position order and read back as the real store reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from cqrskit.envelope import Envelope

__all__ = ["MemoryStoredEvents"]


class MemoryStoredEvents:
    """A :class:`~cqrskit.projections.StoredEvents` over a list of envelopes."""

    def __init__(self, envelopes: Iterable[Envelope] = ()):
        self._envelopes: list[Envelope] = []
        self.extend(envelopes)

    def extend(self, envelopes: Iterable[Envelope]) -> None:
        """Store ``envelopes`` after the others (their positions must keep increasing).

        Raises:
            ValueError: a position is not above the head.
        """
        for envelope in envelopes:
            if envelope.position <= self.head():
                raise ValueError(
                    f"position {envelope.position} is not above the head {self.head()}"
                )
            self._envelopes.append(envelope)

    def head(self) -> int:
        """The position of the last stored event (0 if none)."""
        return self._envelopes[-1].position if self._envelopes else 0

    def envelopes(self, *, after: int = 0, upto: int | None = None) -> Iterator[Envelope]:
        """Every event after ``after`` up to ``upto`` (default: all), in position order."""
        ceiling = upto if upto is not None else self.head()
        return iter([e for e in self._envelopes if after < e.position <= ceiling])
