"""Step 3: the read model. One Elasticsearch document per book."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel

from cqrskit import UNCHANGED, Envelope, Projection, Text, handles
from cqrskit.projections import Outcome


class BookView(BaseModel):
    """A book as the catalogue shows it."""

    book_id: str
    title: Annotated[str, Text]  # analysed for full-text search
    author: str  # a keyword: exact filters and sorting
    available: bool = True
    times_lent: int = 0


class Catalogue(Projection[BookView]):
    """Every book, whether it is on the shelf, and how popular it is."""

    name = "catalogue"
    view = BookView

    @handles("Book.Added")
    def added(self, event: Envelope, doc: BookView | None) -> BookView:
        return BookView(
            book_id=str(event.aggregate_id),
            title=event.payload["title"],
            author=event.payload["author"],
        )

    @handles("Book.Lent")
    def lent(self, event: Envelope, doc: BookView | None) -> Outcome:
        if doc is None:
            return UNCHANGED  # a book the catalogue never saw added: nothing to show
        return doc.model_copy(update={"available": False, "times_lent": doc.times_lent + 1})

    @handles("Book.Returned")
    def returned(self, event: Envelope, doc: BookView | None) -> Outcome:
        return doc.model_copy(update={"available": True}) if doc else UNCHANGED
