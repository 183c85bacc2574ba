"""The blocking and the awaited query bus on in-memory read models: one set of handlers.

What a query answers, when it counts as fresh, what a stale answer says,
and how each bus protects a read model, without any service.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from cqrskit import CircuitOpen, Overloaded, ServiceUnavailable, StaleRead
from cqrskit.adapters.memory.checkpoints import (
    AsyncMemoryCheckpointReader,
    MemoryCheckpointLog,
    MemoryCheckpointReader,
)
from cqrskit.adapters.memory.search import AsyncMemorySearch, MemorySearch
from cqrskit.checkpoints import Checkpoint
from cqrskit.queries import (
    Answer,
    AsyncQueryBus,
    AsyncQueryPorts,
    BreakerPolicy,
    Limits,
    Page,
    Query,
    QueryBus,
    QueryHandlers,
    QueryPorts,
    Read,
    Search,
)
from cqrskit.topology import IndexNames

NAMES = IndexNames("t-")
INDEX = "t-books-v1"


class Book(BaseModel):
    book_id: str
    title: str
    copies: int


class BookById(Query):
    book_id: str


class Shelf(Query):
    at_least: int = 0


queries = QueryHandlers()


@queries.handles(BookById, view="books", model=Book)
def book_by_id(query: BookById, search: Search[Book]) -> Read[Book | None]:
    return search.get(query.book_id)


@queries.handles(Shelf, view="books", model=Book)
def shelf(query: Shelf, search: Search[Book]) -> Read[list[str]]:
    return search.range("copies", gte=query.at_least).sort("title").page().then(_titles)


def _titles(page: Page[Book]) -> list[str]:
    return [b.title for b in page.items]


class Store:
    """Two books, and checkpoints saying how far the index is applied and searchable."""

    def __init__(self) -> None:
        books = {
            "b1": {"book_id": "b1", "title": "Dune", "copies": 3},
            "b2": {"book_id": "b2", "title": "Emma", "copies": 1},
        }
        self.search = MemorySearch({INDEX: books, "t-books": books})  # the index, its alias
        self.log = MemoryCheckpointLog(aliases={"t-books": INDEX})
        self.checkpointed(applied=10, searchable=10)

    def checkpointed(self, applied: int, searchable: int | None) -> None:
        checkpoint = Checkpoint(
            projection="books",
            topic="library.Book",
            partition=0,
            offset=applied,
            position=applied,
            partitions=1,
            topics=("library.Book",),
            index=INDEX,
            searchable=searchable,
        )
        self.log.checkpoints[checkpoint.doc_id] = checkpoint

    def bus(self, limits: Limits | None = None) -> QueryBus:
        ports = QueryPorts(self.search, MemoryCheckpointReader(self.log))
        return QueryBus(queries, ports, NAMES, limits or Limits(read_wait=0.05))

    def async_bus(self, limits: Limits | None = None) -> AsyncQueryBus:
        ports = AsyncQueryPorts(
            AsyncMemorySearch(self.search), AsyncMemoryCheckpointReader(self.log)
        )
        return AsyncQueryBus(queries, ports, NAMES, limits or Limits(read_wait=0.05))


def both(store: Store, query: Query, **options: Any) -> tuple[Answer[Any], Answer[Any]]:
    """The same query asked of the blocking bus and of the awaited one."""
    return store.bus().ask(query, **options), asyncio.run(store.async_bus().ask(query, **options))


def test_one_handler_answers_the_same_on_both_buses() -> None:
    store = Store()
    blocking, awaited = both(store, BookById(book_id="b1"))
    assert blocking == awaited == Answer(Book(book_id="b1", title="Dune", copies=3))
    blocking, awaited = both(store, Shelf(at_least=1))
    assert blocking.value == awaited.value == ["Dune", "Emma"]


def test_a_position_applied_but_not_yet_searchable_is_stale_and_says_by_how_much() -> None:
    store = Store()
    store.checkpointed(applied=30, searchable=24)
    for answer in both(store, Shelf(), min_position=30, on_stale="flag", wait=0.05):
        assert answer.stale
        assert answer.behind == 6
        assert answer.value == ["Dune", "Emma"]  # answered anyway, from the alias
    with pytest.raises(StaleRead):
        store.bus().ask(Shelf(), min_position=30, wait=0.05)
    store.checkpointed(applied=30, searchable=30)
    for answer in both(store, Shelf(), min_position=30):
        assert answer.fresh
        assert answer.behind == 0


def test_a_worker_checkpoint_of_an_older_version_does_not_make_an_answer_fresh() -> None:
    """Regression: a checkpoint with no searchable position counted as searchable
    up to its position. Older workers wrote it right after their bulk writes and
    never refreshed (their queries did): with one still running, a fresh answer
    lacked the write the checkpoint covered."""
    store = Store()
    store.checkpointed(applied=40, searchable=None)  # an older worker applied b3 at 40
    # b3 is in the index but no refresh has made it searchable: the search lacks it.
    for answer in both(store, Shelf(), min_position=40, on_stale="flag"):
        assert answer.stale or "Fall" in answer.value, answer


class FailingSearch(MemorySearch):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        self.calls += 1
        raise ServiceUnavailable("Elasticsearch", "memory", "stopped")


def test_the_breaker_stops_asking_a_store_that_keeps_failing() -> None:
    failing = FailingSearch()
    policy = BreakerPolicy(window=4, min_calls=4, failure_rate=0.5, open_for=60)
    ports = QueryPorts(failing, MemoryCheckpointReader(MemoryCheckpointLog()))
    bus = QueryBus(queries, ports, NAMES, Limits(breaker=policy))
    for _ in range(4):
        with pytest.raises(ServiceUnavailable):
            bus.ask(BookById(book_id="b1"))
    with pytest.raises(CircuitOpen):
        bus.ask(BookById(book_id="b1"))
    assert failing.calls == 4  # the refused read never reached the store


class CountingCheckpoints(AsyncMemoryCheckpointReader):
    def __init__(self, log: MemoryCheckpointLog) -> None:
        super().__init__(log)
        self.looks = 0

    async def applied(self, projection: str, index: str) -> list[Checkpoint]:
        self.looks += 1
        return await super().applied(projection, index)


def test_awaited_waits_share_one_look_at_the_checkpoints_and_all_wake() -> None:
    store = Store()
    store.checkpointed(applied=50, searchable=10)
    checkpoints = CountingCheckpoints(store.log)
    ports = AsyncQueryPorts(AsyncMemorySearch(store.search), checkpoints)
    bus = AsyncQueryBus(queries, ports, NAMES, Limits(read_wait=5, max_waits=100))

    async def scenario() -> list[Answer[Any]]:
        waiting = [asyncio.create_task(bus.ask(Shelf(), min_position=50)) for _ in range(100)]
        while checkpoints.looks < 3:
            await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            await bus.ask(Shelf(), min_position=50)  # the hundred-and-first wait
        store.checkpointed(applied=50, searchable=50)
        return await asyncio.gather(*waiting)

    answers = asyncio.run(scenario())
    assert all(a.fresh for a in answers)
    assert len(answers) == 100
    assert checkpoints.looks < 100, f"{checkpoints.looks} looks for 100 waits"


class AsyncHangingSearch(AsyncMemorySearch):
    def __init__(self) -> None:
        super().__init__()
        self.failing = True

    async def get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        if self.failing:
            raise ServiceUnavailable("Elasticsearch", "memory", "stopped")
        await asyncio.Event().wait()  # no answer, ever
        raise AssertionError("unreachable")


def test_cancelled_trial_reads_do_not_close_the_breaker() -> None:
    """Regression: a half-open trial cancelled by its caller (a client that gave
    up on a store that does not answer) counted as a success."""
    search = AsyncHangingSearch()
    policy = BreakerPolicy(window=4, min_calls=4, failure_rate=0.5, open_for=0.05)
    ports = AsyncQueryPorts(search, AsyncMemoryCheckpointReader(MemoryCheckpointLog()))
    bus = AsyncQueryBus(queries, ports, NAMES, Limits(breaker=policy))

    async def scenario() -> str:
        for _ in range(4):
            with pytest.raises(ServiceUnavailable):
                await bus.ask(BookById(book_id="b1"))
        search.failing = False  # now it hangs instead
        await asyncio.sleep(0.06)
        for _ in range(policy.half_open_calls):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(bus.ask(BookById(book_id="b1")), 0.01)
        return bus.guard("books").breaker.state

    assert asyncio.run(scenario()) != "closed"
