"""One projection's dead letters in memory: the second ``DeadLetters``.

A list plays the dead-letter topic and an offset plays the replay group's
commit. ``refuse`` makes the next flush fail the way Kafka's delivery report
does, so tests can drive the worker's "hold the batch until the letter is
kept" path without a broker.
"""

from __future__ import annotations

from cqrskit.envelope import HEADER_POSITION
from cqrskit.errors import DeadLetterRefused
from cqrskit.projections._ports import DeadLetter, reason_headers
from cqrskit.subscription import Message

__all__ = ["MemoryDeadLetters"]


class MemoryDeadLetters:
    """A :class:`~cqrskit.projections.DeadLetters` of projection ``projection_name``."""

    def __init__(self, projection_name: str, topic: str = "dead-letters"):
        self.projection_name = projection_name
        self.topic = topic
        self.letters: list[DeadLetter] = []
        self._queued: list[DeadLetter] = []
        self._replayed = 0
        self._refusal: str | None = None

    def refuse(self, reason: str) -> None:
        """Make the next :meth:`flush` refuse what it holds, for ``reason``."""
        self._refusal = reason

    def send(self, message: Message, handler: str, error: str) -> None:
        """Queue ``message`` as a dead letter with the reason; see :meth:`flush`."""
        origin = {
            "dlq.topic": message.topic.encode(),
            "dlq.partition": b"%d" % message.partition,
            "dlq.offset": b"%d" % message.offset,
        }
        reason = reason_headers(handler, error)
        self._queue(message.key, message.value, {**message.headers, **origin, **reason})

    def resend(self, letter: DeadLetter, handler: str, error: str) -> None:
        """Queue a dead letter again, with the new reason."""
        origin = {k: v for k, v in letter.headers.items() if k in _ORIGIN}
        headers = {k: v for k, v in letter.headers.items() if not k.startswith("dlq.")}
        self._queue(
            letter.key, letter.value, {**headers, **origin, **reason_headers(handler, error)}
        )

    def _queue(self, key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        headers = {**headers, "dlq.projection": self.projection_name.encode()}
        offset = len(self.letters) + len(self._queued)
        self._queued.append(DeadLetter(offset, key, value, headers))

    def flush(self) -> None:
        """Keep every queued letter, or refuse them all (after :meth:`refuse`).

        Raises:
            DeadLetterRefused: :meth:`refuse` was called; the letters are forgotten.
        """
        queued, self._queued = self._queued, []
        if self._refusal is not None and queued:
            reason, self._refusal = self._refusal, None
            first = queued[0]
            position = first.headers.get(HEADER_POSITION, b"")
            raise DeadLetterRefused(
                self.topic,
                int(position) if position.isdigit() else None,
                first.source,
                reason,
                len(queued),
            )
        self.letters += queued

    def pending(self, *, include_replayed: bool = False) -> tuple[list[DeadLetter], int]:
        """Dead letters not replayed yet (or all of them), and the offset after the last."""
        start = 0 if include_replayed else self._replayed
        return self.letters[start:], len(self.letters)

    def mark_replayed(self, offset: int) -> None:
        """Record that every dead letter before ``offset`` was replayed."""
        self._replayed = max(self._replayed, offset)


_ORIGIN = ("dlq.topic", "dlq.partition", "dlq.offset")
