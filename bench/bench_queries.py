"""Query latency: cqrskit's QueryBus against raw Elasticsearch client calls.

The shop's ``order_summaries`` and ``products`` read models, filled untimed in
the stored shape; a get by id and a filtered full-text search through the
``QueryBus``, each beside the raw client's same query (and, for the search,
the requests ``Search.page`` sends), with one and several threads, the
variants taking turns block by block (``bench/README.md``, "Query latency").
Run from the repository root::

    .venv/bin/python bench/bench_queries.py [--quick] [--docs N] [--queries N]
"""

from __future__ import annotations

import cProfile
import gc
import math
import pstats
import random
import statistics
import sys
import threading
import time
import timeit
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import orjson
from _kit import cli
from _kit.cli import Config
from _kit.machine import machine_info
from _kit.measure import gc_timed, percentile, profile_rows
from _kit.product import (
    METADATA_FIELD,
    DocState,
    ElasticsearchCheckpointReader,
    ElasticsearchSearch,
    IndexNames,
    Page,
    Query,
    QueryBus,
    QueryHandlers,
    Runtime,
    Search,
    es_backend,
    read_model_for,
)
from _kit.report import figure, profile_table, save_figure, table
from _kit.stack import clean_up
from elasticsearch import Elasticsearch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
from pydantic import Field
from rich.console import Console

from cqrskit import Settings
from examples.shop.queries import OrderById, order_by_id
from projections import OrderSummaries, OrderSummary, Product, ProductSearch

PAGE_SIZE = 20
#: What ``Search`` adds to every query (cqrskit/queries/_search.py).
NOT_DELETED = {"bool": {"must_not": {"term": {f"{METADATA_FIELD}.deleted": True}}}}
PIT_KEEP_ALIVE = "2m"

Workload = Literal["get", "search"]
Side = Literal["cqrskit", "raw"]


class BenchmarkError(RuntimeError):
    """The read models do not hold what was written, or the sides disagree."""


# --- the search query, registered here ----------------------------------------------


class SearchProductGroup(Query):
    """Full-text search over product names, within one product group (SKU prefix)."""

    text: str = Field(min_length=1, max_length=200)
    group: str = Field(pattern=r"^[A-Z]{3}$")
    page_size: int = Field(default=PAGE_SIZE, ge=1, le=100)
    cursor: str | None = None


def group_bounds(group: str) -> dict[str, str]:
    """The keyword range of one group's SKUs: ``TEA-000001`` .. ``TEA-999999``."""
    return {"gte": f"{group}-", "lt": f"{group}."}  # "." sorts right after "-"


def search_product_group(query: SearchProductGroup, search: Search[Product]) -> Page[Product]:
    bounds = group_bounds(query.group)
    return (
        search.text(query.text, "name")
        .range("sku", gte=bounds["gte"], lt=bounds["lt"])
        .page(query.page_size, query.cursor)
    )


def bench_handlers() -> QueryHandlers:
    """The shop's ``OrderById`` handler, and the group search."""
    handlers = QueryHandlers()
    handlers.handles(OrderById, view="order_summaries", model=OrderSummary)(order_by_id)
    handlers.handles(SearchProductGroup, view="products", model=Product)(search_product_group)
    return handlers


def raw_query(text: str, group: str) -> dict[str, Any]:
    """The query ``search_product_group`` sends, built by hand."""
    return {
        "bool": {
            "filter": [{"range": {"sku": group_bounds(group)}}, NOT_DELETED],
            "must": [{"match": {"name": {"query": text, "operator": "and"}}}],
        }
    }


# --- the documents ------------------------------------------------------------------

#: Product groups (the SKU prefix) and the nouns of their names.
GROUPS: dict[str, list[str]] = {
    "TEA": ["tea", "infusion", "tisane", "chai", "matcha"],
    "COF": ["coffee", "espresso", "beans", "roast", "decaf"],
    "MUG": ["mug", "cup", "teacup", "tumbler", "saucer"],
    "POT": ["teapot", "kettle", "pot", "carafe", "press"],
    "CHO": ["chocolate", "truffle", "praline", "cocoa", "bar"],
    "BIS": ["biscuit", "cookie", "shortbread", "wafer", "cracker"],
    "HON": ["honey", "syrup", "jam", "marmalade", "spread"],
    "SUG": ["sugar", "sweetener", "candy", "fudge", "toffee"],
    "FIL": ["filter", "strainer", "infuser", "sieve", "pouch"],
    "GIF": ["gift", "hamper", "box", "set", "sampler"],
}
ADJECTIVES = [
    "organic", "classic", "premium", "smoked", "spiced", "golden", "dark", "light", "wild",
    "vintage", "fresh", "rare", "mild", "strong", "sweet",
]  # fmt: skip
ORIGINS = [
    "assam", "darjeeling", "ceylon", "kenyan", "yunnan", "colombian", "ethiopian", "belgian",
    "swiss", "scottish",
]  # fmt: skip
SIZES = ["50g", "100g", "250g", "500g", "1kg", "small", "medium", "large", "6-pack", "12-pack"]
STATUSES = [("placed", 50), ("paid", 40), ("cancelled", 10)]
CANCEL_REASONS = ["changed my mind", "found it cheaper", "ordered twice", "too slow"]


def product_documents(count: int, rng: random.Random) -> Iterator[tuple[str, dict[str, Any]]]:
    """(id, stored document) of ``count`` products, names from the vocabulary."""
    groups = list(GROUPS)
    for n in range(count):
        group = groups[n % len(groups)]
        item_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        name = (
            f"{rng.choice(ADJECTIVES).title()} {rng.choice(ORIGINS).title()} "
            f"{rng.choice(GROUPS[group])} {rng.choice(SIZES)}"
        )
        view = Product(item_id=item_id, sku=f"{group}-{n // len(groups):06d}", name=name)
        yield item_id, DocState(item_id, view, sources={item_id: 1}, position=n + 1).body()


def order_documents(
    count: int, rng: random.Random, skus: Sequence[str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(id, stored document) of ``count`` order summaries: placed, paid or cancelled."""
    statuses = [s for s, _ in STATUSES]
    weights = [w for _, w in STATUSES]
    start = datetime(2026, 8, 1, tzinfo=UTC)
    for n in range(count):
        order_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        status = rng.choices(statuses, weights)[0]
        lines = [
            (rng.choice(skus), rng.randint(1, 4), Decimal(rng.randint(150, 4999)) / 100)
            for _ in range(rng.randint(1, 5))
        ]
        sources = {order_id: 1}
        update: dict[str, Any] = {}
        if status == "paid":
            payment_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            sources = {order_id: 2, payment_id: 2}
            update = {"payment_id": payment_id, "payment_status": "captured"}
        elif status == "cancelled":
            sources = {order_id: 2}
            update = {"cancel_reason": rng.choice(CANCEL_REASONS)}
        view = OrderSummary(
            order_id=order_id,
            customer_id=f"customer-{rng.randrange(20_000):05d}",
            status=status,
            total=sum((price * quantity for _, quantity, price in lines), Decimal(0)),
            items=sum(quantity for _, quantity, _ in lines),
            skus=sorted({sku for sku, _, _ in lines}),
            placed_at=start + timedelta(seconds=rng.randrange(90 * 86_400)),
            **update,
        )
        yield order_id, DocState(order_id, view, sources=sources, position=n + 1).body()


def bulk_fill(
    es: Elasticsearch, alias: str, documents: Iterator[tuple[str, dict[str, Any]]], chunk: int
) -> list[str]:
    """Index the documents through the alias, ``chunk`` per bulk request; their ids."""
    ids: list[str] = []
    operations: list[bytes] = []

    def flush() -> None:
        response = es.bulk(operations=operations)
        if response["errors"]:
            first = next(
                next(iter(item.values())) for item in response["items"] if "error" in str(item)
            )
            raise BenchmarkError(f"bulk fill of {alias} refused a document: {first}")
        operations.clear()

    for doc_id, document in documents:
        ids.append(doc_id)
        operations.append(orjson.dumps({"create": {"_index": alias, "_id": doc_id}}))
        operations.append(orjson.dumps(document))
        if len(operations) >= 2 * chunk:
            flush()
    if operations:
        flush()
    return ids


# --- variants and measurements ------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One way of answering one of the two queries."""

    key: str
    label: str
    workload: Workload
    side: Side
    #: HTTP requests to Elasticsearch per query.
    requests: int
    what: str


VARIANTS = [
    Variant(*row)
    for row in (
        ("cqrskit-get", "cqrskit get", "get", "cqrskit", 1,
         "QueryBus.ask(OrderById(order_id=str)): the shop's handler, search.get -> "
         "GET /<alias>/_doc/<id>, metadata popped, OrderSummary.model_validate"),
        ("raw-get", "raw get (baseline)", "get", "raw", 1,
         "Elasticsearch.get(index=alias, id=str)['_source']"),
        ("cqrskit-search", "cqrskit search", "search", "cqrskit", 2,
         "QueryBus.ask(SearchProductGroup(text, group)): search.text(text, 'name')"
         ".range('sku', group).page(20) -> open a point in time, search it (sort _shard_doc, "
         "track_total_hits), 20 Product.model_validate, Page with a cursor"),
        ("raw-search", "raw search (baseline)", "search", "raw", 1,
         "Elasticsearch.search(index=alias, query={bool: {filter: [range sku, not deleted], "
         "must: [match name, operator and]}}, size=20)"),
        ("raw-search-pit", "raw PIT + search", "search", "raw", 2,
         "Elasticsearch.open_point_in_time(index=alias, keep_alive=2m) then "
         ".search(pit=..., same query, size=20, sort=[_shard_doc], track_total_hits=True): "
         "the requests Search.page sends, without the framework"),
    )
]  # fmt: skip
BASELINES: dict[Workload, str] = {"get": "raw-get", "search": "raw-search"}
#: A second reference for the search: the framework's requests, without the framework.
SAME_REQUESTS = "raw-search-pit"


def latencies(ms: Sequence[float], points: Sequence[float]) -> dict[str, float]:
    """``p50_ms`` ... (``p99_9_ms`` for 99.9), ``max_ms``, ``mean_ms`` of latencies in ms."""
    ordered = sorted(ms)
    found = {f"p{p:g}_ms".replace(".", "_"): percentile(ordered, p) for p in points}
    return {**found, "max_ms": ordered[-1], "mean_ms": statistics.fmean(ordered)}


@dataclass
class Batch:
    """One timed batch of one variant: latencies and wall time."""

    threads: int
    queries: int
    seconds: float
    #: CPU of this process during the batch (the client's side: Python, JSON, HTTP).
    cpu_seconds: float
    latencies_ms: list[float] = field(repr=False)
    #: Time in the cyclic garbage collector during the batch, and its collections.
    gc_seconds: float = 0.0
    gc_collections: int = 0
    #: Seconds of each block the batch was run in (interleaved with the other variants).
    block_seconds: list[float] = field(default_factory=list)

    @property
    def qps(self) -> float:
        return self.queries / self.seconds

    @staticmethod
    def merge(blocks: Sequence[Batch]) -> Batch:
        """One batch of a variant's blocks of one round."""
        return Batch(
            threads=blocks[0].threads,
            queries=sum(b.queries for b in blocks),
            seconds=sum(b.seconds for b in blocks),
            cpu_seconds=sum(b.cpu_seconds for b in blocks),
            latencies_ms=[x for b in blocks for x in b.latencies_ms],
            gc_seconds=sum(b.gc_seconds for b in blocks),
            gc_collections=sum(b.gc_collections for b in blocks),
            block_seconds=[b.seconds for b in blocks],
        )

    def summary(self) -> dict[str, float]:
        return {
            "qps": self.qps,
            **latencies(self.latencies_ms, (50, 90, 99)),
            "client_cpu_us_per_query": 1e6 * self.cpu_seconds / self.queries,
            "gc_us_per_query": 1e6 * self.gc_seconds / self.queries,
            "gc_collections": self.gc_collections,
        }


@dataclass
class Measurement:
    """A variant's timed batches over the rounds."""

    variant: Variant
    sequential: list[Batch] = field(default_factory=list)
    threaded: list[Batch] = field(default_factory=list)

    def median(self, metric: str, threaded: bool = False) -> float:
        batches = self.threaded if threaded else self.sequential
        return statistics.median(b.summary()[metric] for b in batches)

    def values(self, metric: str, threaded: bool = False) -> list[float]:
        batches = self.threaded if threaded else self.sequential
        return [b.summary()[metric] for b in batches]

    def pooled(self) -> dict[str, float]:
        """Percentiles over every sequential query of every round."""
        ordered = [x for b in self.sequential for x in b.latencies_ms]
        return {"queries": len(ordered), **latencies(ordered, (50, 90, 99, 99.9))}


@dataclass(frozen=True)
class Ratio:
    """cqrskit over a raw baseline: queries per second and latency."""

    variant: str
    baseline: str
    #: Median q/s over the rounds, mine / the baseline's.
    qps: float
    qps_rounds: list[float]
    #: Per block (the same queries, run one right after the other): quartiles of the ratios.
    qps_blocks: tuple[float, float, float]
    p50: float
    p99: float
    mean: float
    qps_threaded: float | None
    qps_threaded_rounds: list[float]
    qps_threaded_blocks: tuple[float, float, float] | None


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile)."""
    if len(values) == 1:
        return (values[0], values[0], values[0])
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return (q1, q2, q3)


def ratio_of(mine: Measurement, base: Measurement) -> Ratio:
    def per_round(threaded: bool = False) -> list[float]:
        return [
            a / b
            for a, b in zip(mine.values("qps", threaded), base.values("qps", threaded), strict=True)
        ]

    def per_block(threaded: bool = False) -> tuple[float, float, float]:
        pairs = zip(
            mine.threaded if threaded else mine.sequential,
            base.threaded if threaded else base.sequential,
            strict=True,
        )
        return quartiles(
            [
                theirs / ours  # the same queries: the ratio of the rates is that of the times
                for a, b in pairs
                for ours, theirs in zip(a.block_seconds, b.block_seconds, strict=True)
            ]
        )

    threaded = bool(mine.threaded and base.threaded)
    return Ratio(
        variant=mine.variant.key,
        baseline=base.variant.key,
        qps=mine.median("qps") / base.median("qps"),
        qps_rounds=per_round(),
        qps_blocks=per_block(),
        p50=mine.median("p50_ms") / base.median("p50_ms"),
        p99=mine.median("p99_ms") / base.median("p99_ms"),
        mean=mine.median("mean_ms") / base.median("mean_ms"),
        qps_threaded=(mine.median("qps", True) / base.median("qps", True) if threaded else None),
        qps_threaded_rounds=per_round(True) if threaded else [],
        qps_threaded_blocks=per_block(True) if threaded else None,
    )


def ratios_of(measurements: Sequence[Measurement]) -> list[Ratio]:
    """cqrskit over the plain raw call; the search also over the framework's own requests."""
    by_key = {m.variant.key: m for m in measurements}
    ratios = []
    for m in measurements:
        if m.variant.side != "cqrskit":
            continue
        ratios.append(ratio_of(m, by_key[BASELINES[m.variant.workload]]))
        if m.variant.workload == "search" and SAME_REQUESTS in by_key:
            ratios.append(ratio_of(m, by_key[SAME_REQUESTS]))
    if SAME_REQUESTS in by_key:  # what the point in time and the sort cost, raw
        ratios.append(ratio_of(by_key[SAME_REQUESTS], by_key[BASELINES["search"]]))
    return ratios


# --- the run ------------------------------------------------------------------------


def open_contexts(es: Elasticsearch) -> int:
    """Search contexts (points in time, scrolls) open on the node now."""
    stats = es.nodes.stats(node_id="_local", metric="indices", index_metric="search")
    return sum(int(n["indices"]["search"]["open_contexts"]) for n in stats["nodes"].values())


class Bench:
    """One run's read models, clients, query lists and the calls of every variant."""

    def __init__(self, settings: Settings, config: Config, console: Console):
        self.settings = settings
        self.config = config
        self.console = console
        self.admin = es_backend.client(settings).options(request_timeout=120)
        self.orders = read_model_for(settings, OrderSummaries())
        self.products = read_model_for(settings, ProductSearch())
        self.order_ids: list[str] = []
        self.product_skus: list[str] = []
        # Each side has its own client, configured as the framework's (es_backend.client).
        self.bus = Runtime(settings).query_bus(bench_handlers())
        self.raw = Elasticsearch(
            settings.elasticsearch_url, request_timeout=settings.connect_timeout, max_retries=0
        )
        self.calls: dict[str, Callable[[Any], Any]] = {
            "cqrskit-get": lambda oid: self.bus.ask(OrderById(order_id=oid)).value,
            "raw-get": lambda oid: self.raw.get(index=self.orders.alias, id=oid)["_source"],
            "cqrskit-search": lambda q: (
                self.bus.ask(SearchProductGroup(text=q[0], group=q[1])).value
            ),
            "raw-search": lambda q: self.raw.search(
                index=self.products.alias, query=raw_query(q[0], q[1]), size=PAGE_SIZE
            )["hits"],
            "raw-search-pit": self._raw_pit_search,
        }
        self.contexts_seen: dict[str, int] = {}
        # The point in time a page's cursor holds open is the one its search answered
        # with: noted per thread from the bus's own client (one call and a dict look-up
        # in the timed path), to be closed after the block.
        self.pit = threading.local()
        search = self.bus.views.es.search  # type: ignore[attr-defined]

        def noting(**kwargs: Any) -> Any:
            found = search(**kwargs)
            self.pit.last = found.get("pit_id")
            return found

        self.bus.views.es.search = noting  # type: ignore[attr-defined]

    def _raw_pit_search(self, q: tuple[str, str]) -> Any:
        pit = self.raw.open_point_in_time(index=self.products.alias, keep_alive=PIT_KEEP_ALIVE)
        return self.raw.search(
            pit={"id": pit["id"], "keep_alive": PIT_KEEP_ALIVE},
            query=raw_query(q[0], q[1]),
            size=PAGE_SIZE,
            sort=[{"_shard_doc": "asc"}],
            track_total_hits=True,
        )

    # -- setup and teardown ----------------------------------------------------------

    def fill(self) -> dict[str, Any]:
        """Create both read models the framework's way, bulk-fill them, refresh."""
        config, console = self.config, self.console
        rng = random.Random(config.seed)
        started = time.perf_counter()
        self.orders.ensure()
        self.products.ensure()
        fill_es = self.admin
        console.log(f"filling {self.products.alias} with {config.docs:,} products")
        bulk_fill(
            fill_es, self.products.alias, product_documents(config.docs, rng), config.fill_chunk
        )
        self.product_skus = [
            f"{g}-{n:06d}" for g in GROUPS for n in range(min(200, config.docs // len(GROUPS)))
        ]
        console.log(f"filling {self.orders.alias} with {config.docs:,} order summaries")
        self.order_ids = bulk_fill(
            fill_es,
            self.orders.alias,
            order_documents(config.docs, rng, self.product_skus),
            config.fill_chunk,
        )
        for alias in (self.orders.alias, self.products.alias):
            fill_es.indices.refresh(index=alias)
        seconds = time.perf_counter() - started
        counts = {
            "order_summaries": self.orders.count(),
            "products": self.products.count(),
        }
        if counts != {"order_summaries": config.docs, "products": config.docs}:
            raise BenchmarkError(f"the read models hold {counts}, expected {config.docs} each")
        indices = {}
        for alias in (self.orders.alias, self.products.alias):
            stats = fill_es.indices.stats(index=alias, metric="docs,store,segments")
            for name, index in stats["indices"].items():
                indices[name] = {
                    "docs": index["primaries"]["docs"]["count"],
                    "store_bytes": index["primaries"]["store"]["size_in_bytes"],
                    "segments": index["primaries"]["segments"]["count"],
                }
        console.log(
            f"filled and refreshed in {seconds:.1f} s (not timed): "
            + ", ".join(
                f"{n}: {i['docs']:,} docs, {i['store_bytes'] / 1e6:.0f} MB, "
                f"{i['segments']} segments"
                for n, i in indices.items()
            )
        )
        return {"fill_seconds": seconds, "indices": indices}

    # -- the queries -----------------------------------------------------------------

    def items(self, workload: Workload, count: int, rng: random.Random) -> list[Any]:
        """``count`` random order ids, or (text, group) searches."""
        if workload == "get":
            return [rng.choice(self.order_ids) for _ in range(count)]
        searches = []
        for _ in range(count):
            group = rng.choice(list(GROUPS))
            noun = rng.choice(GROUPS[group])
            shape = rng.random()
            if shape < 0.3:
                text = noun
            elif shape < 0.7:
                text = f"{rng.choice(ADJECTIVES)} {noun}"
            else:
                text = f"{rng.choice(ORIGINS)} {noun}"
            searches.append((text, group))
        return searches

    def check(self) -> dict[str, Any]:
        """Untimed: the two sides answer the same, and how many hits the searches have."""
        rng = random.Random(self.config.seed + 1)
        for oid in self.items("get", 50, rng):
            mine = self.calls["cqrskit-get"](oid)
            source = dict(self.calls["raw-get"](oid))
            source.pop(METADATA_FIELD)
            if mine != OrderSummary.model_validate(source) or mine.order_id != oid:
                raise BenchmarkError(f"OrderById({oid}) answered {mine!r}, raw {source!r}")
        totals = []
        for q in self.items("search", 200, rng):
            page = self.calls["cqrskit-search"](q)
            plain = self.calls["raw-search"](q)
            same = self.calls["raw-search-pit"](q)
            self.close_pits([self.pit.last] if page.cursor else [])
            self.close_pits([same["pit_id"]])
            hits = same["hits"]
            if not (page.total == plain["total"]["value"] == hits["total"]["value"]):
                raise BenchmarkError(
                    f"{q}: totals differ: cqrskit {page.total}, raw {plain['total']['value']}, "
                    f"raw with PIT {hits['total']['value']}"
                )
            if [p.item_id for p in page.items] != [h["_id"] for h in hits["hits"]]:
                raise BenchmarkError(f"{q}: cqrskit and the raw PIT search return other items")
            if not all(p.sku.startswith(f"{q[1]}-") for p in page.items):
                raise BenchmarkError(f"{q}: an item outside group {q[1]}")
            totals.append(page.total)
        totals.sort()
        short = sum(1 for t in totals if t <= PAGE_SIZE)
        self.console.log(
            f"checked: both sides agree on 50 gets and 200 searches; hits per search "
            f"min {totals[0]}, median {statistics.median(totals):.0f}, max {totals[-1]}"
            f" ({short} of 200 fit on one page)"
        )
        return {
            "search_hits_min": totals[0],
            "search_hits_median": statistics.median(totals),
            "search_hits_max": totals[-1],
            "searches_on_one_page": short,
            "checked_gets": 50,
            "checked_searches": 200,
        }

    def close_pits(self, pits: Sequence[str]) -> None:
        """Close points in time left open (the next page would have used them)."""
        for pit in pits:
            self.raw.options(ignore_status=404).close_point_in_time(id=pit)

    def left_open(self, variant: Variant, answer: Any) -> str | None:
        """The point in time an answer holds open, if any."""
        if variant.key == "cqrskit-search":
            return str(self.pit.last) if answer.cursor else None
        if variant.key == "raw-search-pit":
            return str(answer["pit_id"])
        return None

    def run_batch(self, variant: Variant, items: Sequence[Any], threads: int) -> Batch:
        """Time ``items`` through ``variant``'s call: one thread, or ``threads`` sharing.

        Answers are dropped at once, as a server would (only the id of a point in
        time left open is kept, outside the timed call, to close it afterwards).
        """
        call = self.calls[variant.key]
        keep = variant.workload == "search"
        shares = [list(items[n::threads]) for n in range(threads)]
        latencies: list[list[float]] = [[] for _ in shares]
        pits: list[str | None] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(threads + 1) if threads > 1 else None

        def loop(n: int) -> None:
            mine = latencies[n]
            if barrier is not None:
                barrier.wait()
            try:
                for item in shares[n]:
                    t0 = time.perf_counter()
                    answer = call(item)
                    mine.append(time.perf_counter() - t0)
                    if keep:
                        pits.append(self.left_open(variant, answer))
            except BaseException as exc:  # raised below
                errors.append(exc)

        workers = (
            [threading.Thread(target=loop, args=(n,), name=f"query-{n}") for n in range(threads)]
            if barrier
            else []
        )
        for w in workers:
            w.start()
        gc.collect()
        with gc_timed() as pauses:
            cpu = time.process_time()
            if barrier is not None:
                barrier.wait()
            started = time.perf_counter()
            if workers:
                for w in workers:
                    w.join()
            else:
                loop(0)
            seconds = time.perf_counter() - started
            cpu = time.process_time() - cpu
        if errors:
            raise BenchmarkError(f"{variant.key}: a query failed: {errors[0]!r}") from errors[0]
        if keep:
            self.contexts_seen[variant.key] = max(
                self.contexts_seen.get(variant.key, 0), open_contexts(self.admin)
            )
            self.close_pits([p for p in pits if p])
        return Batch(
            threads,
            len(items),
            seconds,
            cpu,
            [1000 * x for share in latencies for x in share],
            gc_seconds=pauses.seconds,
            gc_collections=sum(pauses.collections),
        )

    def run_rounds(self) -> list[Measurement]:
        """Interleaved rounds: per workload, the variants take turns block by block."""
        config, console = self.config, self.console
        measurements = {v.key: Measurement(v) for v in VARIANTS}
        modes = [1] + ([config.threads] if config.threads > 1 else [])
        for round_no in range(1, config.rounds + 1):
            rng = random.Random(config.seed * 1000 + round_no)
            for workload in ("get", "search"):
                variants = [v for v in VARIANTS if v.workload == workload]
                warm = self.items(workload, config.warmup, rng)
                timed = self.items(workload, config.queries, rng)
                size = math.ceil(len(timed) / config.blocks)
                blocks = [timed[i : i + size] for i in range(0, len(timed), size)]
                for v in variants:
                    if warm:
                        self.run_batch(v, warm, 1)
                for threads in modes:
                    parts: dict[str, list[Batch]] = {v.key: [] for v in variants}
                    for n, block in enumerate(blocks):
                        # Rotate the order, so that each variant runs first, second, ...
                        turn = (n + round_no) % len(variants)
                        for v in variants[turn:] + variants[:turn]:
                            parts[v.key].append(self.run_batch(v, block, threads))
                    for v in variants:
                        batch = Batch.merge(parts[v.key])
                        m = measurements[v.key]
                        (m.threaded if threads > 1 else m.sequential).append(batch)
                        summary = batch.summary()
                        console.log(
                            f"round {round_no}/{config.rounds}  {v.label:<30} {threads} "
                            f"thread{'s' if threads > 1 else ' '} {batch.qps:>7,.0f} q/s  "
                            f"p50 {summary['p50_ms']:.2f} ms  p99 {summary['p99_ms']:.2f} ms"
                        )
        return [measurements[v.key] for v in VARIANTS]

    # -- where cqrskit's time goes -----------------------------------------------------

    def python_costs(self) -> dict[str, Any]:
        """Untimed by the rounds: the framework's Python steps, each timed alone (us)."""
        rng = random.Random(self.config.seed + 2)
        oid = self.items("get", 1, rng)[0]
        q = self.items("search", 1, rng)[0]
        got = self.raw.get(index=self.orders.alias, id=oid)
        plain_source = got["_source"]
        same = self._raw_pit_search(q)
        self.close_pits([same["pit_id"]])
        hits = same["hits"]["hits"]
        handlers = self.bus.handlers
        query = SearchProductGroup(text=q[0], group=q[1])

        def validate_order() -> OrderSummary:
            source = dict(plain_source)
            source.pop(METADATA_FIELD, None)
            return OrderSummary.model_validate(source)

        def validate_products() -> list[Product]:
            items = []
            for hit in hits:
                source = dict(hit["_source"])
                source.pop(METADATA_FIELD, None)
                items.append(Product.model_validate(source))
            return items

        products = validate_products()
        page = self.calls["cqrskit-search"](q)  # a real cursor, its point in time closed
        self.close_pits([self.pit.last] if page.cursor else [])
        cursor = page.cursor or "c" * 200

        steps: dict[str, dict[str, Callable[[], Any]]] = {
            "get": {
                "OrderById(order_id=str)": lambda: OrderById(order_id=oid),
                "registration + QueryBus.search (a Search)": lambda: (
                    handlers.registration(OrderById(order_id=oid)),
                    self.bus.search("order_summaries", OrderSummary),
                ),
                "copy source, pop metadata, OrderSummary.model_validate": validate_order,
            },
            "search": {
                "SearchProductGroup(text, group)": lambda: SearchProductGroup(
                    text=q[0], group=q[1]
                ),
                "QueryBus.search + .text().range()": lambda: (
                    self.bus.search("products", Product)
                    .text(query.text, "name")
                    .range("sku", **group_bounds(query.group))
                ),
                f"{len(hits)} x (copy source, pop metadata, Product.model_validate)": (
                    validate_products
                ),
                "Page[V](items, total, cursor)": lambda: Page[Product](
                    items=products, total=100, cursor=cursor
                ),
            },
        }
        # The whole of cqrskit's side at once: the bus, with a client that answers at once.
        stub = StubElasticsearch(got.body, same.body)
        names = IndexNames.of(self.settings)
        stub_bus = QueryBus(
            self.bus.handlers,
            ElasticsearchSearch(stub, "stub"),  # type: ignore[arg-type]
            ElasticsearchCheckpointReader(stub, names.checkpoints_index, "stub"),  # type: ignore[arg-type]
            names,
            read_wait=self.settings.read_wait,
        )
        steps["get"]["whole QueryBus.ask, stub client (no HTTP)"] = lambda: stub_bus.ask(
            OrderById(order_id=oid)
        )
        steps["search"]["whole QueryBus.ask, stub client (no HTTP)"] = lambda: stub_bus.ask(
            SearchProductGroup(text=q[0], group=q[1])
        )
        costs: dict[str, Any] = {}
        for workload, named in steps.items():
            costs[workload] = []
            for name, step in named.items():
                number = 2000
                best = min(timeit.repeat(step, number=number, repeat=5)) / number
                costs[workload].append({"step": name, "us": 1e6 * best})
        # Server time of each search form (Elasticsearch's own "took"), over the same queries.
        took: dict[str, list[int]] = {"raw-search": [], "raw-search-pit": []}
        for item in self.items("search", 300, rng):
            plain = self.raw.search(
                index=self.products.alias, query=raw_query(*item), size=PAGE_SIZE
            )
            took["raw-search"].append(int(plain["took"]))
            same = self._raw_pit_search(item)
            took["raw-search-pit"].append(int(same["took"]))
            self.close_pits([same["pit_id"]])
        costs["search_took_ms"] = {
            k: {"median": statistics.median(v), "mean": statistics.fmean(v)}
            for k, v in took.items()
        }
        # The point in time alone: open and close, one after the other.
        opens = []
        for _ in range(300):
            t0 = time.perf_counter()
            pit = self.raw.open_point_in_time(index=self.products.alias, keep_alive="1m")["id"]
            opens.append(time.perf_counter() - t0)
            self.close_pits([pit])
        costs["open_point_in_time_ms"] = {
            "median": 1000 * statistics.median(opens),
            "mean": 1000 * statistics.fmean(opens),
        }
        return costs

    def profile(self, path: Path) -> dict[str, list[dict[str, Any]]]:
        """cProfile of the cqrskit calls, one per workload: the top functions by own time."""
        rng = random.Random(self.config.seed + 3)
        tops: dict[str, list[dict[str, Any]]] = {}
        combined: pstats.Stats | None = None
        for workload, key in (("get", "cqrskit-get"), ("search", "cqrskit-search")):
            items = self.items(workload, min(self.config.queries, 2000), rng)
            call, pits = self.calls[key], []
            profiler = cProfile.Profile()
            for item in items:
                profiler.enable()
                answer = call(item)
                profiler.disable()
                pits.append(self.left_open(self.variant(key), answer))
            self.close_pits([p for p in pits if p])
            combined = pstats.Stats(profiler) if combined is None else combined.add(profiler)
            tops[workload] = profile_rows(profiler, top=20, per=len(items), cumulative=False)
        if combined is not None:
            combined.dump_stats(str(path))
        return tops

    @staticmethod
    def variant(key: str) -> Variant:
        """The variant of ``key``."""
        return next(v for v in VARIANTS if v.key == key)


class StubElasticsearch:
    """Answers the calls ``Search`` makes at once, with recorded responses: no HTTP."""

    def __init__(self, get_body: dict[str, Any], search_body: dict[str, Any]):
        self.get_body = get_body
        self.search_body = search_body

    def get(self, **_: Any) -> dict[str, Any]:
        return self.get_body

    def open_point_in_time(self, **_: Any) -> dict[str, Any]:
        return {"id": self.search_body["pit_id"]}

    def search(self, **_: Any) -> dict[str, Any]:
        return self.search_body

    def options(self, **_: Any) -> StubElasticsearch:
        return self

    def close_point_in_time(self, **_: Any) -> dict[str, Any]:
        return {"succeeded": True}


# --- output -------------------------------------------------------------------------


@dataclass
class Outcome:
    """Everything measured in one run of the script."""

    measurements: list[Measurement]
    ratios: list[Ratio]
    fill: dict[str, Any]
    check: dict[str, Any]
    costs: dict[str, Any]
    contexts_seen: dict[str, int]
    profile: dict[str, list[dict[str, Any]]] | None = None
    profile_path: str | None = None


def print_tables(console: Console, outcome: Outcome, config: Config) -> None:
    """The latency table, the ratios, and where cqrskit's time goes."""
    threaded = config.threads > 1
    rows = []
    for m in outcome.measurements:
        qps = m.values("qps")
        rows.append(
            [
                m.variant.label,
                str(m.variant.requests),
                f"{m.median('qps'):,.0f}",
                f"{min(qps):,.0f} - {max(qps):,.0f}",
                *(f"{m.median(k):.2f}" for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")),
                f"{m.median('client_cpu_us_per_query'):,.0f}",
                f"{m.median('gc_us_per_query'):,.0f}",
                *(
                    [f"{m.median('qps', True):,.0f}", f"{m.median('p50_ms', True):.2f}"]
                    if threaded
                    else []
                ),
            ]
        )
    table(
        console,
        f"Query latency over {config.docs:,} documents per read model: {config.queries:,} "
        f"queries per variant and round in {config.blocks} interleaved blocks, "
        f"{config.rounds} rounds (medians of the rounds)",
        [
            "variant",
            "req",
            "q/s 1 thread",
            "min - max",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "mean ms",
            "client CPU us/q",
            "GC us/q",
            *(
                [f"q/s {config.threads} threads", f"p50 ms {config.threads} thr"]
                if threaded
                else []
            ),
        ],
        rows,
    )
    labels = {v.key: v.label for v in VARIANTS}

    def blocks(q: tuple[float, float, float] | None) -> str:
        return f"{q[1]:.2f} ({q[0]:.2f}-{q[2]:.2f})" if q else "-"

    def ratio_row(r: Ratio) -> list[str]:
        row = [
            labels[r.variant],
            labels[r.baseline],
            f"{r.qps:.2f}x",
            ", ".join(f"{x:.2f}" for x in r.qps_rounds),
            blocks(r.qps_blocks),
            f"{r.p50:.2f}x",
            f"{r.p99:.2f}x",
        ]
        if threaded:
            row += [
                f"{r.qps_threaded:.2f}x" if r.qps_threaded else "-",
                ", ".join(f"{x:.2f}" for x in r.qps_threaded_rounds),
                blocks(r.qps_threaded_blocks),
            ]
        return row

    table(
        console,
        "Ratios (cqrskit / raw, medians of the rounds; q/s: higher is better)",
        [
            "variant",
            "over",
            "q/s 1 thread",
            "per round",
            "per block",
            "p50 latency",
            "p99 latency",
            *([f"q/s {config.threads} threads", "per round", "per block"] if threaded else []),
        ],
        (ratio_row(r) for r in outcome.ratios),
    )
    print_explanations(console, outcome)


def print_explanations(console: Console, outcome: Outcome) -> None:
    """The notes, the Python steps' costs, the server's time and the profile."""
    console.print(
        "per block: median (quartiles) of the q/s ratios of the blocks, each block's same "
        "queries run by the two variants one right after the other (steadier than rounds on "
        "a busy machine). "
        "req: HTTP requests to Elasticsearch per query. client CPU: CPU of this process per "
        "query (Python, JSON, HTTP) during the sequential batches; GC: of which in the cyclic "
        "garbage collector. Latency ratios: above 1 "
        "means slower. Compare ratios within one run, not absolute figures across runs."
    )

    table(
        console,
        "cqrskit's Python steps, each timed alone (best of 5 x 2000 calls)",
        ["query", "step", "us"],
        (
            [w, step["step"], f"{step['us']:.1f}"]
            for w in ("get", "search")
            for step in outcome.costs[w]
        ),
    )
    took = outcome.costs["search_took_ms"]
    console.print(
        f"Elasticsearch's own time (took, mean over 300 queries, whole ms each): plain "
        f"search {took['raw-search']['mean']:.2f} ms, PIT search sorted by _shard_doc "
        f"{took['raw-search-pit']['mean']:.2f} ms; open_point_in_time round trip "
        f"{outcome.costs['open_point_in_time_ms']['median']:.2f} ms (median). "
        f"Most search contexts open on the node after a block or warm-up (the points in "
        f"time it left open, closed by the benchmark afterwards): {outcome.contexts_seen}"
    )
    for workload, rows in (outcome.profile or {}).items():
        profile_table(console, f"cProfile of cqrskit {workload}", rows, 12)


def results(
    config: Config, settings: Settings, outcome: Outcome
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The result's configuration, and what it measured."""
    return {
        **vars(config),
        "index_prefix": settings.index_prefix,
        "page_size": PAGE_SIZE,
        "fill": "untimed: read_model_for(settings, Projection()).ensure(), then bulk "
        "create of DocState(id, view, sources, position).body(), refresh",
        "groups": list(GROUPS),
        "search_texts": "a group's noun (30%), adjective + noun (40%), origin + noun (30%); "
        "filter: sku in the group's keyword range",
        "timed": "each query's latency with time.perf_counter around the call (query "
        "object built inside for cqrskit); q/s: queries / wall time of the variant's "
        "blocks of a round",
        "interleaving": f"per round and workload, the queries are cut in {config.blocks} "
        "blocks; each block runs through every variant, one after the other, the order "
        "rotating from block to block; warm-up of every variant before the first block",
        "threaded": f"the same queries split over {config.threads} threads sharing one "
        "client (and one QueryBus)",
        "gc": "gc.freeze() after the fill (the benchmark's own data out of full "
        "collections); gc.collect() before each block; time in collections during a "
        "block measured with gc.callbacks",
        "pits": "points in time left open by a block (cqrskit's page cursor, the raw PIT "
        "variant) are closed after the block, untimed",
    }, {
        "fill": outcome.fill,
        "check": outcome.check,
        "variants": [
            {
                **asdict(m.variant),
                "sequential_rounds": [b.summary() for b in m.sequential],
                "threaded_rounds": [{**b.summary(), "threads": b.threads} for b in m.threaded],
                "median_qps": m.median("qps"),
                "median_p50_ms": m.median("p50_ms"),
                "median_p99_ms": m.median("p99_ms"),
                "median_mean_ms": m.median("mean_ms"),
                "median_client_cpu_us_per_query": m.median("client_cpu_us_per_query"),
                "median_gc_us_per_query": m.median("gc_us_per_query"),
                "median_qps_threaded": m.median("qps", True) if m.threaded else None,
                "pooled_sequential": m.pooled(),
            }
            for m in outcome.measurements
        ],
        "ratios": [asdict(r) for r in outcome.ratios],
        "python_costs_us": {k: outcome.costs[k] for k in ("get", "search")},
        "search_took_ms": outcome.costs["search_took_ms"],
        "open_point_in_time_ms": outcome.costs["open_point_in_time_ms"],
        "max_open_search_contexts_after_batch": outcome.contexts_seen,
        "profile_top": outcome.profile,
        "profile_file": outcome.profile_path,
    }


COLOURS = {
    "cqrskit-get": "#1f77b4",
    "raw-get": "#9e9e9e",
    "cqrskit-search": "#1f77b4",
    "raw-search": "#9e9e9e",
    "raw-search-pit": "#ff7f0e",
}


def plot_latency(cdf: Any, ms: Sequence[Measurement], title: str) -> None:
    """The distribution of the sequential latencies of ``ms``, every round pooled."""
    for m in ms:
        ordered = sorted(x for b in m.sequential for x in b.latencies_ms)
        ys = [(n + 1) / len(ordered) for n in range(len(ordered))]
        cdf.plot(ordered, ys, color=COLOURS[m.variant.key], label=m.variant.label, lw=1.5)
        pooled = m.pooled()
        for q, style in (("p50_ms", "o"), ("p99_ms", "^")):
            cdf.plot(
                pooled[q],
                0.5 if q == "p50_ms" else 0.99,
                style,
                color=COLOURS[m.variant.key],
                ms=5,
            )
    cdf.set_xscale("log")
    cdf.xaxis.set_major_locator(FixedLocator([0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200]))
    cdf.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))
    cdf.xaxis.set_minor_formatter(NullFormatter())
    cdf.set_xlabel("latency, ms (log scale; one client thread, every round pooled)")
    cdf.set_ylabel("fraction of queries")
    cdf.axhline(0.99, color="#dddddd", lw=0.8, zorder=0)
    cdf.axhline(0.5, color="#dddddd", lw=0.8, zorder=0)
    cdf.legend(fontsize=8, loc="lower right")
    cdf.set_title(f"{title}: latency (o p50, ^ p99)", fontsize=9)


def save_chart(
    path: Path, *, outcome: Outcome, config: Config, machine: dict[str, Any], stamp: str
) -> None:
    """Per query: latency distributions (left) and queries per second (right)."""
    made = figure(12, 8.5)
    grid = made.add_gridspec(2, 2, width_ratios=[1.15, 1])
    by_key = {m.variant.key: m for m in outcome.measurements}
    ratio_for = {
        (r.variant, r.baseline): r for r in outcome.ratios if r.variant.startswith("cqrskit")
    }
    titles = {
        "get": "get by id (OrderById vs es.get)",
        "search": f"full-text search in a group, {PAGE_SIZE} per page",
    }
    for row, workload in enumerate(("get", "search")):
        ms = [by_key[v.key] for v in VARIANTS if v.workload == workload]
        base = BASELINES[workload]
        plot_latency(made.add_subplot(grid[row, 0]), ms, titles[workload])
        bars = made.add_subplot(grid[row, 1])
        groups = [("1 thread", False)]
        if config.threads > 1:
            groups.append((f"{config.threads} threads", True))
        width = 0.8 / len(ms)
        top = 0.0
        for g, (_name, threaded) in enumerate(groups):
            for n, m in enumerate(ms):
                values = m.values("qps", threaded)
                median = statistics.median(values)
                x = g + (n - (len(ms) - 1) / 2) * width
                bars.bar(
                    x,
                    median,
                    width * 0.92,
                    yerr=[[median - min(values)], [max(values) - median]],
                    capsize=3,
                    color=COLOURS[m.variant.key],
                    label=m.variant.label if g == 0 else None,
                )
                if m.variant.side == "cqrskit":
                    r = ratio_for[(m.variant.key, base)]
                    text = f"{(r.qps_threaded if threaded else r.qps) or 0:.2f}x"
                    same = ratio_for.get((m.variant.key, SAME_REQUESTS))
                    if same:
                        text += f"\n({(same.qps_threaded if threaded else same.qps) or 0:.2f}x PIT)"
                elif m.variant.key == base:
                    text = "base"
                else:
                    text = f"{median / by_key[base].median('qps', threaded):.2f}x"
                bars.annotate(
                    f"{median:,.0f}\n{text}",
                    (x, max(values)),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
                top = max(top, *values)
        bars.set_xticks(range(len(groups)), [name for name, _ in groups], fontsize=9)
        bars.set_ylim(0, top * 1.3)
        bars.set_ylabel("queries per second (median of rounds)")
        bars.legend(fontsize=7, loc="upper left")
        bars.set_title(f"{titles[workload]}: q/s, ratio to {base}", fontsize=9)
    made.suptitle(
        f"cqrskit QueryBus vs raw elasticsearch client: {config.docs:,} docs per read model, "
        f"{config.queries:,} queries x {config.rounds} rounds in {config.blocks} interleaved "
        "blocks, Elasticsearch "
        f"{machine['elasticsearch']['version']}, {machine['nproc']} CPUs, run {stamp}\n"
        "whiskers: slowest and fastest round; label: median q/s and ratio to the raw baseline "
        "(search: and to the raw PIT + search, the framework's own requests)",
        fontsize=9,
    )
    save_figure(made, path)


# --- entry point --------------------------------------------------------------------


def measure(settings: Settings, config: Config, session: cli.Session) -> Outcome:
    """Fill the read models, check, run the rounds and the extras; delete the indices."""
    bench = Bench(settings, config, session.console)
    try:
        fill = bench.fill()
        check = bench.check()
        # The benchmark's own data (100,000s of ids, the query lists) is nothing a
        # server would hold: keep it out of the garbage collector's full passes.
        gc.collect()
        gc.freeze()
        try:
            measurements = bench.run_rounds()
        finally:
            gc.unfreeze()
        session.console.log("timing cqrskit's Python steps and the server's time")
        costs = bench.python_costs()
        outcome = Outcome(
            measurements, ratios_of(measurements), fill, check, costs, bench.contexts_seen
        )
        if config.profile:
            path = session.profile_path()
            outcome.profile, outcome.profile_path = bench.profile(path), str(path)
            session.console.log(f"profile saved to {path}")
    finally:
        clean_up(settings, session.console, indices=settings.index_prefix)
    return outcome


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Command-line options."""
    config = cli.parse(
        __doc__,
        "1000 queries per round, not 5000",
        [
            cli.Opt("--docs", 100_000, "documents in each read model", least=1000),
            cli.Opt("--queries", 5000, "timed queries per variant and round", 1000, 1),
            cli.Opt("--warmup", 300, "untimed queries per variant before a round", least=0),
            cli.Opt("--rounds", 3, "interleaved rounds", least=1),
            cli.Opt(
                "--blocks",
                10,
                "blocks a round's queries are cut in; the variants take turns block by block",
                least=1,
            ),
            cli.Opt("--threads", 4, "threads of the concurrent batches (1: skip them)", least=1),
            cli.Opt("--fill-chunk", 5000, "documents per bulk request", least=1),
            cli.Opt("--seed", 7, "seed of the documents and queries"),
            cli.Opt("--profile", False, "cProfile the cqrskit calls (saves .prof)"),
        ],
        argv,
    )
    config.blocks = min(config.blocks, config.queries)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables and save the JSON and the chart."""
    config = parse_args(argv)
    session = cli.Session.begin("queries", config.results, 180)
    settings = Settings.load().model_copy(update={"index_prefix": f"{session.tag}-"})
    machine = machine_info(
        settings,
        services=("elasticsearch",),
        packages=(
            "cqrskit",
            "elasticsearch",
            "elastic-transport",
            "urllib3",
            "pydantic",
            "pydantic-core",
            "orjson",
        ),
    )
    session.console.log(
        f"Elasticsearch {machine['elasticsearch']['version']} at {settings.elasticsearch_url} "
        f"({machine['elasticsearch']['detail']}), {machine['nproc']} CPUs, Python "
        f"{machine['python']}; {config.docs:,} documents per read model, {config.queries:,} "
        f"queries x {config.rounds} rounds per variant, index prefix {settings.index_prefix}"
    )
    outcome = measure(settings, config, session)
    print_tables(session.console, outcome, config)
    configuration, measured = results(config, settings, outcome)
    session.save(
        configuration,
        machine,
        lambda path: save_chart(
            path, outcome=outcome, config=config, machine=machine, stamp=session.stamp
        ),
        **measured,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
