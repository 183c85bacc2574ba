"""Step 1: the aggregate. Plain Python; each decorated method is an event."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from cqrskit import Aggregate, RuleViolated, event

Title = Annotated[str, Field(min_length=1, max_length=300)]


class Book(Aggregate):
    """One copy of a book: on the shelf or lent to a member."""

    title: str
    author: str
    borrower: str | None

    @event("Added")
    def __init__(self, title: Title, author: Title) -> None:
        self.title = title
        self.author = author
        self.borrower = None

    def lend(self, member_id: str) -> None:
        """Lend the book; refused while someone else has it."""
        if self.borrower is not None:
            raise RuleViolated(f"{self.title!r} is already lent to {self.borrower}")
        self._lent(member_id=member_id)

    @event("Lent")
    def _lent(self, member_id: Annotated[str, Field(min_length=1, max_length=64)]) -> None:
        self.borrower = member_id

    def give_back(self) -> None:
        """Take the book back; refused if it is on the shelf."""
        if self.borrower is None:
            raise RuleViolated(f"{self.title!r} is not lent to anyone")
        self._returned(member_id=self.borrower)

    @event("Returned")
    def _returned(self, member_id: str) -> None:
        self.borrower = None
