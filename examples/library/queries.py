"""Step 4: queries, answered from the read model only."""

from __future__ import annotations

from pydantic import Field

from cqrskit.queries import Page, Query, QueryHandlers, Read, Search
from examples.library.views import BookView

queries = QueryHandlers()


class FindBooks(Query):
    """Books whose title matches some words, optionally only those on the shelf."""

    text: str = Field(min_length=1, max_length=200)
    available_only: bool = False
    cursor: str | None = None


class BooksBy(Query):
    """An author's books, most lent first."""

    author: str = Field(min_length=1, max_length=300)


@queries.handles(FindBooks, view="catalogue", model=BookView)
def find_books(query: FindBooks, search: Search[BookView]) -> Read[Page[BookView]]:
    found = search.text(query.text, "title")
    if query.available_only:
        found = found.where(available=True)
    return found.page(20, query.cursor)


@queries.handles(BooksBy, view="catalogue", model=BookView)
def books_by(query: BooksBy, search: Search[BookView]) -> Read[Page[BookView]]:
    return search.where(author=query.author).sort("-times_lent", "book_id").page(50)
