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
from typing import Any

import orjson
from _kit import cli, report
from _kit.measure import BenchmarkError, gc_timed, profile_rows, quantiles_ms
from _kit.product import (
    METADATA_FIELD,
    NOT_DELETED,
    DocState,
    ElasticsearchCheckpointReader,
    ElasticsearchSearch,
    IndexNames,
    Limits,
    Page,
    Query,
    QueryBus,
    QueryHandlers,
    QueryPorts,
    Read,
    Runtime,
    Search,
    es_backend,
    read_model_for,
)
from elasticsearch import Elasticsearch
from matplotlib.axes import Axes
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
from pydantic import Field

from examples.shop.queries import OrderById, order_by_id
from projections import OrderSummaries, OrderSummary, Product, ProductSearch

PAGE_SIZE = 20
PIT_KEEP_ALIVE = "2m"
WORKLOADS = ("get", "search")
NOTES = {
    "page_size": PAGE_SIZE,
    "fill": "untimed: read_model_for(settings, Projection()).ensure(), then bulk create of "
    "DocState(id, view, sources, position).body(), refresh",
    "search_texts": "a group's noun (30%), adjective + noun (40%), origin + noun (30%); filter: "
    "sku in the group's keyword range",
    "timed": "each query's latency with time.perf_counter around the call (query object built "
    "inside for cqrskit); q/s: queries / wall time of the variant's blocks of a round",
    "gc": "gc.freeze() after the fill (the benchmark's own data out of full collections); "
    "gc.collect() before each block; time in collections during a block measured with "
    "gc.callbacks",
    "pits": "points in time left open by a block (cqrskit's page cursor, the raw PIT variant) "
    "are closed after the block, untimed",
}


class SearchProductGroup(Query):
    """Full-text search over product names, within one product group (SKU prefix)."""

    text: str = Field(min_length=1, max_length=200)
    group: str = Field(pattern=r"^[A-Z]{3}$")
    page_size: int = Field(default=PAGE_SIZE, ge=1, le=100)
    cursor: str | None = None


def group_bounds(group: str) -> dict[str, str]:
    """The keyword range of one group's SKUs: ``TEA-000001`` .. ``TEA-999999``."""
    return {"gte": f"{group}-", "lt": f"{group}."}  # "." sorts right after "-"


def search_product_group(query: SearchProductGroup, search: Search[Product]) -> Read[Page[Product]]:
    """The search through cqrskit: text in the name, the group's SKU range, one page."""
    return (
        search.text(query.text, "name")
        .range("sku", **group_bounds(query.group))
        .page(query.page_size, query.cursor)
    )


def bench_handlers() -> QueryHandlers:
    """The shop's ``OrderById`` handler, and the group search."""
    handlers = QueryHandlers()
    handlers.handles(OrderById, view="order_summaries", model=OrderSummary)(order_by_id)
    handlers.handles(SearchProductGroup, view="products", model=Product)(search_product_group)
    return handlers


def raw_query(text: str, group: str) -> dict[str, Any]:
    """The query ``search_product_group`` sends, built by hand (``NOT_DELETED``: the
    product's own clause, which every search excludes)."""
    return {
        "bool": {
            "filter": [{"range": {"sku": group_bounds(group)}}],
            "must": [{"match": {"name": {"query": text, "operator": "and"}}}],
            "must_not": [NOT_DELETED],
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


def new_id(rng: random.Random) -> str:
    """A random UUID4 from ``rng`` (the same run after run)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def product_documents(count: int, rng: random.Random) -> Iterator[tuple[str, dict[str, Any]]]:
    """(id, stored document) of ``count`` products, names from the vocabulary."""
    groups = list(GROUPS)
    for n in range(count):
        group, item_id = groups[n % len(groups)], new_id(rng)
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
    statuses, weights = zip(*STATUSES, strict=True)
    start = datetime(2026, 8, 1, tzinfo=UTC)
    for n in range(count):
        order_id = new_id(rng)
        status = rng.choices(statuses, weights)[0]
        lines = [
            (rng.choice(skus), rng.randint(1, 4), Decimal(rng.randint(150, 4999)) / 100)
            for _ in range(rng.randint(1, 5))
        ]
        sources, update = {order_id: 1}, dict[str, Any]()
        if status == "paid":
            payment_id = new_id(rng)
            sources = {order_id: 2, payment_id: 2}
            update = {"payment_id": payment_id, "payment_status": "captured"}
        elif status == "cancelled":
            sources, update = {order_id: 2}, {"cancel_reason": rng.choice(CANCEL_REASONS)}
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
        response = es.bulk(operations=operations)  # type: ignore[arg-type]
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


# --- variants, batches and ratios ---------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One way of answering one of the two queries."""

    key: str
    label: str
    workload: str
    side: str
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
BASELINES = {"get": "raw-get", "search": "raw-search"}
#: A second reference for the search: the framework's requests, without the framework.
SAME_REQUESTS = "raw-search-pit"
COLOURS = {"cqrskit": "#1f77b4", "raw": "#9e9e9e", SAME_REQUESTS: "#ff7f0e"}


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

    @staticmethod
    def merge(blocks: Sequence[Batch]) -> Batch:
        """One batch of a variant's blocks of one round."""
        return Batch(
            blocks[0].threads,
            sum(b.queries for b in blocks),
            sum(b.seconds for b in blocks),
            sum(b.cpu_seconds for b in blocks),
            [x for b in blocks for x in b.latencies_ms],
            sum(b.gc_seconds for b in blocks),
            sum(b.gc_collections for b in blocks),
            [b.seconds for b in blocks],
        )

    def summary(self) -> dict[str, float]:
        """q/s, latencies, and the client's CPU and collector time per query."""
        return {
            "qps": self.queries / self.seconds,
            **quantiles_ms(self.latencies_ms, (50, 90, 99), scale=1.0, count=None),
            "client_cpu_us_per_query": 1e6 * self.cpu_seconds / self.queries,
            "gc_us_per_query": 1e6 * self.gc_seconds / self.queries,
            "gc_collections": self.gc_collections,
        }


@dataclass
class Measurement:
    """A variant's timed batches over the rounds: with one thread, and with several."""

    variant: Variant
    sequential: list[Batch] = field(default_factory=list)
    threaded: list[Batch] = field(default_factory=list)

    def values(self, metric: str, threaded: bool = False) -> list[float]:
        """``metric`` of every round's batch."""
        return [b.summary()[metric] for b in (self.threaded if threaded else self.sequential)]

    def median(self, metric: str, threaded: bool = False) -> float:
        """The median of ``metric`` over the rounds."""
        return statistics.median(self.values(metric, threaded))

    def pooled(self) -> dict[str, float]:
        """Percentiles over every sequential query of every round."""
        ordered = [x for b in self.sequential for x in b.latencies_ms]
        return quantiles_ms(ordered, (50, 90, 99, 99.9), scale=1.0, count="queries")


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile)."""
    if len(values) == 1:
        return (values[0], values[0], values[0])
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return (q1, q2, q3)


def ratio_of(mine: Measurement, base: Measurement) -> dict[str, Any]:
    """cqrskit over a raw baseline: queries per second (of the medians, per round, and the
    quartiles per block: the same queries, one right after the other) and latency."""

    def qps(threaded: bool) -> dict[str, Any]:
        pairs = zip(*(m.threaded if threaded else m.sequential for m in (mine, base)), strict=True)
        blocks = [
            theirs / ours  # the same queries: the ratio of the rates is that of the times
            for a, b in pairs
            for ours, theirs in zip(a.block_seconds, b.block_seconds, strict=True)
        ]
        rounds = [
            a / b for a, b in zip(*(m.values("qps", threaded) for m in (mine, base)), strict=True)
        ]
        ratio = mine.median("qps", threaded) / base.median("qps", threaded)
        return {"": ratio, "_rounds": rounds, "_blocks": quartiles(blocks)}

    latency = {k: mine.median(f"{k}_ms") / base.median(f"{k}_ms") for k in ("p50", "p99", "mean")}
    one = {f"qps{k}": v for k, v in qps(False).items()}
    several = (
        qps(True) if mine.threaded and base.threaded else {"": None, "_rounds": [], "_blocks": None}
    )
    return {"variant": mine.variant.key, "baseline": base.variant.key, "qps": one["qps"],
            "qps_rounds": one["qps_rounds"], "qps_blocks": one["qps_blocks"], **latency,
            **{f"qps_threaded{k}": v for k, v in several.items()}}  # fmt: skip


def ratios_of(ms: Sequence[Measurement]) -> list[dict[str, Any]]:
    """cqrskit over the plain raw call; the search also over the framework's own requests,
    and those requests raw over the plain call (what the point in time and the sort cost)."""
    by_key = {m.variant.key: m for m in ms}
    pairs = [
        (m.variant.key, BASELINES[m.variant.workload]) for m in ms if m.variant.side == "cqrskit"
    ]
    pairs.insert(2, ("cqrskit-search", SAME_REQUESTS))
    pairs.append((SAME_REQUESTS, BASELINES["search"]))
    return [ratio_of(by_key[a], by_key[b]) for a, b in pairs]


# --- the run ------------------------------------------------------------------------


def open_contexts(es: Elasticsearch) -> int:
    """Search contexts (points in time, scrolls) open on the node now."""
    stats = es.nodes.stats(node_id="_local", metric="indices", index_metric="search")
    return sum(int(n["indices"]["search"]["open_contexts"]) for n in stats["nodes"].values())


class Bench:
    """One run's read models, clients, query lists and the calls of every variant."""

    def __init__(self, run: cli.Run):
        self.run, self.config, self.console = run, run.config, run.console
        settings = self.settings = run.settings
        self.admin = es_backend.client(settings).options(request_timeout=120)
        self.orders = read_model_for(settings, OrderSummaries())
        self.products = read_model_for(settings, ProductSearch())
        self.order_ids: list[str] = []
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
                index=self.products.alias, query=raw_query(*q), size=PAGE_SIZE
            )["hits"],
            "raw-search-pit": self.raw_pit_search,
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

    def raw_pit_search(self, q: tuple[str, str]) -> Any:
        """The requests ``Search.page`` sends, by hand: a point in time, then its search."""
        pit = self.raw.open_point_in_time(index=self.products.alias, keep_alive=PIT_KEEP_ALIVE)
        return self.raw.search(
            pit={"id": pit["id"], "keep_alive": PIT_KEEP_ALIVE},
            query=raw_query(*q),
            size=PAGE_SIZE,
            sort=[{"_shard_doc": "asc"}],
            track_total_hits=True,
        )

    def fill(self) -> dict[str, Any]:
        """Create both read models the framework's way, bulk-fill them, refresh."""
        config, console, es = self.config, self.console, self.admin
        rng = random.Random(config.seed)
        started = time.perf_counter()
        self.orders.ensure()
        self.products.ensure()
        console.log(f"filling {self.products.alias} with {config.docs:,} products")
        products = product_documents(config.docs, rng)
        bulk_fill(es, self.products.alias, products, config.fill_chunk)
        skus = [f"{g}-{n:06d}" for g in GROUPS for n in range(min(200, config.docs // len(GROUPS)))]
        console.log(f"filling {self.orders.alias} with {config.docs:,} order summaries")
        orders = order_documents(config.docs, rng, skus)
        self.order_ids = bulk_fill(es, self.orders.alias, orders, config.fill_chunk)
        aliases = (self.orders.alias, self.products.alias)
        for alias in aliases:
            es.indices.refresh(index=alias)
        seconds = time.perf_counter() - started
        counts = {"order_summaries": self.orders.count(), "products": self.products.count()}
        if counts != {"order_summaries": config.docs, "products": config.docs}:
            raise BenchmarkError(f"the read models hold {counts}, expected {config.docs} each")
        indices = {}
        for alias in aliases:
            stats = es.indices.stats(index=alias, metric="docs,store,segments")
            for name, index in stats["indices"].items():
                primaries = index["primaries"]
                indices[name] = {
                    "docs": primaries["docs"]["count"],
                    "store_bytes": primaries["store"]["size_in_bytes"],
                    "segments": primaries["segments"]["count"],
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

    def items(self, workload: str, count: int, rng: random.Random) -> list[Any]:
        """``count`` random order ids, or (text, group) searches."""
        if workload == "get":
            return [rng.choice(self.order_ids) for _ in range(count)]
        searches = []
        for _ in range(count):
            group = rng.choice(list(GROUPS))
            noun, shape = rng.choice(GROUPS[group]), rng.random()
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

    def close_pits(self, pits: Sequence[str | None]) -> None:
        """Close points in time left open (the next page would have used them)."""
        for pit in filter(None, pits):
            self.raw.options(ignore_status=404).close_point_in_time(id=pit)

    def left_open(self, key: str, answer: Any) -> str | None:
        """The point in time an answer holds open, if any."""
        if key == "cqrskit-search":
            return str(self.pit.last) if answer.cursor else None
        return str(answer["pit_id"]) if key == SAME_REQUESTS else None

    def run_batch(self, variant: Variant, items: Sequence[Any], threads: int) -> Batch:
        """Time ``items`` through ``variant``'s call: one thread, or ``threads`` sharing.

        Answers are dropped at once, as a server would (only the id of a point in
        time left open is kept, outside the timed call, to close it afterwards).
        """
        call, keep = self.calls[variant.key], variant.workload == "search"
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
                        pits.append(self.left_open(variant.key, answer))
            except BaseException as exc:  # raised below
                errors.append(exc)

        workers = [
            threading.Thread(target=loop, args=(n,), name=f"query-{n}") for n in range(threads)
        ]
        for w in workers if barrier else []:
            w.start()
        gc.collect()
        with gc_timed() as pauses:
            cpu = time.process_time()
            if barrier is not None:
                barrier.wait()
            started = time.perf_counter()
            if barrier is not None:
                for w in workers:
                    w.join()
            else:
                loop(0)
            seconds = time.perf_counter() - started
            cpu = time.process_time() - cpu
        if errors:
            raise BenchmarkError(f"{variant.key}: a query failed: {errors[0]!r}") from errors[0]
        if keep:
            seen = max(self.contexts_seen.get(variant.key, 0), open_contexts(self.admin))
            self.contexts_seen[variant.key] = seen
            self.close_pits(pits)
        latencies_ms = [1000 * x for share in latencies for x in share]
        return Batch(threads, len(items), seconds, cpu, latencies_ms, pauses.seconds,
                     sum(pauses.collections))  # fmt: skip

    def run_rounds(self) -> list[Measurement]:
        """Interleaved rounds: per workload, the variants take turns block by block."""
        config = self.config
        measurements = {v.key: Measurement(v) for v in VARIANTS}
        modes = [1] + ([config.threads] if config.threads > 1 else [])
        for round_no in range(1, config.rounds + 1):
            rng = random.Random(config.seed * 1000 + round_no)
            for workload in WORKLOADS:
                variants = [v for v in VARIANTS if v.workload == workload]
                warm = self.items(workload, config.warmup, rng)
                timed = self.items(workload, config.queries, rng)
                size = math.ceil(len(timed) / config.blocks)
                blocks = [timed[i : i + size] for i in range(0, len(timed), size)]
                for v in variants if warm else []:
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
                        s = batch.summary()
                        self.console.log(
                            f"round {round_no}/{config.rounds}  {v.label:<30} {threads} "
                            f"thread{'s' if threads > 1 else ' '} {s['qps']:>7,.0f} q/s  "
                            f"p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms"
                        )
        return [measurements[v.key] for v in VARIANTS]

    # -- where cqrskit's time goes -----------------------------------------------------

    def python_costs(self) -> dict[str, Any]:
        """Untimed by the rounds: the framework's Python steps, each timed alone (us)."""
        rng = random.Random(self.config.seed + 2)
        oid, q = self.items("get", 1, rng)[0], self.items("search", 1, rng)[0]
        got = self.raw.get(index=self.orders.alias, id=oid)
        plain_source, same = got["_source"], self.raw_pit_search(q)
        self.close_pits([same["pit_id"]])
        hits, handlers = same["hits"]["hits"], self.bus.handlers
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
        # The whole of cqrskit's side at once: the bus, with a client that answers at once.
        stub, names = StubElasticsearch(got.body, same.body), IndexNames.of(self.settings)
        ports = QueryPorts(
            ElasticsearchSearch(stub, "stub"),  # type: ignore[arg-type]
            ElasticsearchCheckpointReader(stub, names.checkpoints_index, "stub"),  # type: ignore[arg-type]
        )
        stub_bus = QueryBus(self.bus.handlers, ports, names, Limits(self.settings.read_wait))
        steps: dict[str, dict[str, Callable[[], Any]]] = {
            "get": {
                "OrderById(order_id=str)": lambda: OrderById(order_id=oid),
                "registration + handler (the Read, no I/O)": lambda: handlers.read(
                    OrderById(order_id=oid)
                ),
                "copy source, pop metadata, OrderSummary.model_validate": validate_order,
                "whole QueryBus.ask, stub client (no HTTP)": lambda: stub_bus.ask(
                    OrderById(order_id=oid)
                ),
            },
            "search": {
                "SearchProductGroup(text, group)": lambda: SearchProductGroup(
                    text=q[0], group=q[1]
                ),
                "Search + .text().range()": lambda: (
                    Search(Product)
                    .text(query.text, "name")
                    .range("sku", **group_bounds(query.group))
                ),
                f"{len(hits)} x (copy source, pop metadata, Product.model_validate)": (
                    validate_products
                ),
                "Page[V](items, total, cursor)": lambda: Page[Product](
                    items=products, total=100, cursor=cursor
                ),
                "whole QueryBus.ask, stub client (no HTTP)": lambda: stub_bus.ask(
                    SearchProductGroup(text=q[0], group=q[1])
                ),
            },
        }
        costs: dict[str, Any] = {
            workload: [
                {"step": name, "us": 1e6 * min(timeit.repeat(step, number=2000, repeat=5)) / 2000}
                for name, step in named.items()
            ]
            for workload, named in steps.items()
        }
        # Server time of each search form (Elasticsearch's own "took"), over the same queries.
        took: dict[str, list[int]] = {"raw-search": [], SAME_REQUESTS: []}
        for item in self.items("search", 300, rng):
            plain = self.raw.search(
                index=self.products.alias, query=raw_query(*item), size=PAGE_SIZE
            )
            same = self.raw_pit_search(item)
            took["raw-search"].append(int(plain["took"]))
            took[SAME_REQUESTS].append(int(same["took"]))
            self.close_pits([same["pit_id"]])
        costs["search_took_ms"] = {k: median_mean(v) for k, v in took.items()}
        # The point in time alone: open and close, one after the other.
        opens = []
        for _ in range(300):
            t0 = time.perf_counter()
            pit = self.raw.open_point_in_time(index=self.products.alias, keep_alive="1m")["id"]
            opens.append(1000 * (time.perf_counter() - t0))
            self.close_pits([pit])
        costs["open_point_in_time_ms"] = median_mean(opens)
        return costs

    def profile(self, path: Path) -> dict[str, list[dict[str, Any]]]:
        """cProfile of the cqrskit calls, one per workload: the top functions by own time."""
        rng = random.Random(self.config.seed + 3)
        tops: dict[str, list[dict[str, Any]]] = {}
        combined: pstats.Stats | None = None
        for workload in WORKLOADS:
            key = f"cqrskit-{workload}"
            items = self.items(workload, min(self.config.queries, 2000), rng)
            call, pits, profiler = self.calls[key], [], cProfile.Profile()
            for item in items:
                profiler.enable()
                answer = call(item)
                profiler.disable()
                pits.append(self.left_open(key, answer))
            self.close_pits(pits)
            combined = pstats.Stats(profiler) if combined is None else combined.add(profiler)
            tops[workload] = profile_rows(profiler, top=20, per=len(items), cumulative=False)
        if combined is not None:
            combined.dump_stats(str(path))
        return tops


def median_mean(values: Sequence[float]) -> dict[str, float]:
    """``{"median": ..., "mean": ...}``."""
    return {"median": statistics.median(values), "mean": statistics.fmean(values)}


@dataclass
class Recorded:
    """A recorded response, as the client gives one (``elasticsearch.dsl`` reads ``.body``)."""

    body: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.body[key]


class StubElasticsearch:
    """Answers the calls the search adapter makes at once, with recorded responses: no HTTP."""

    def __init__(self, get_body: dict[str, Any], search_body: dict[str, Any]):
        self.get_body, self.search_body = get_body, search_body

    def get(self, **_: Any) -> dict[str, Any]:
        return self.get_body

    def open_point_in_time(self, **_: Any) -> dict[str, Any]:
        return {"id": self.search_body["pit_id"]}

    def search(self, **_: Any) -> Recorded:
        return Recorded(self.search_body)

    def options(self, **_: Any) -> StubElasticsearch:
        return self

    def close_point_in_time(self, **_: Any) -> dict[str, Any]:
        return {"succeeded": True}


# --- output -------------------------------------------------------------------------


@dataclass
class Outcome:
    """Everything measured in one run of the script."""

    measurements: list[Measurement]
    ratios: list[dict[str, Any]]
    fill: dict[str, Any]
    check: dict[str, Any]
    costs: dict[str, Any]
    contexts_seen: dict[str, int]
    profile: dict[str, list[dict[str, Any]]] | None = None
    profile_path: str | None = None


def print_tables(run: cli.Run, outcome: Outcome) -> None:
    """The latency table, the ratios, and where cqrskit's time goes."""
    config, console = run.config, run.console
    threads = config.threads if config.threads > 1 else None
    latency = ("p50_ms", "p90_ms", "p99_ms", "mean_ms")
    report.table(
        console,
        f"Query latency over {config.docs:,} documents per read model: {config.queries:,} "
        f"queries per variant and round in {config.blocks} interleaved blocks, "
        f"{config.rounds} rounds (medians of the rounds)",
        "variant | req | q/s 1 thread | min - max | p50 ms | p90 ms | p99 ms | mean ms | "
        "client CPU us/q | GC us/q"
        + (f" | q/s {threads} threads | p50 ms {threads} thr" if threads else ""),
        (
            [
                m.variant.label,
                str(m.variant.requests),
                f"{m.median('qps'):,.0f}",
                f"{min(m.values('qps')):,.0f} - {max(m.values('qps')):,.0f}",
                *(f"{m.median(k):.2f}" for k in latency),
                f"{m.median('client_cpu_us_per_query'):,.0f}",
                f"{m.median('gc_us_per_query'):,.0f}",
                *(
                    [f"{m.median('qps', True):,.0f}", f"{m.median('p50_ms', True):.2f}"]
                    if threads
                    else []
                ),
            ]
            for m in outcome.measurements
        ),
    )
    labels = {v.key: v.label for v in VARIANTS}

    def blocks(q: Sequence[float] | None) -> str:
        return f"{q[1]:.2f} ({q[0]:.2f}-{q[2]:.2f})" if q else "-"

    def qps(r: dict[str, Any], threaded: str = "") -> list[str]:
        median = r[f"qps{threaded}"]
        rounds = ", ".join(f"{x:.2f}" for x in r[f"qps{threaded}_rounds"])
        return [f"{median:.2f}x" if median else "-", rounds, blocks(r[f"qps{threaded}_blocks"])]

    report.table(
        console,
        "Ratios (cqrskit / raw, medians of the rounds; q/s: higher is better)",
        "variant | over | q/s 1 thread | per round | per block | p50 latency | p99 latency"
        + (f" | q/s {threads} threads | per round | per block" if threads else ""),
        (
            [
                labels[r["variant"]],
                labels[r["baseline"]],
                *qps(r),
                f"{r['p50']:.2f}x",
                f"{r['p99']:.2f}x",
                *(qps(r, "_threaded") if threads else []),
            ]
            for r in outcome.ratios
        ),
    )
    console.print(
        "per block: median (quartiles) of the q/s ratios of the blocks, each block's same "
        "queries run by the two variants one right after the other (steadier than rounds on "
        "a busy machine). req: HTTP requests to Elasticsearch per query. client CPU: CPU of "
        "this process per query (Python, JSON, HTTP) during the sequential batches; GC: of "
        "which in the cyclic garbage collector. Latency ratios: above 1 means slower. Compare "
        "ratios within one run, not absolute figures across runs."
    )
    report.table(
        console,
        "cqrskit's Python steps, each timed alone (best of 5 x 2000 calls)",
        "query | step | us",
        ([w, s["step"], f"{s['us']:.1f}"] for w in WORKLOADS for s in outcome.costs[w]),
    )
    took = outcome.costs["search_took_ms"]
    console.print(
        f"Elasticsearch's own time (took, mean over 300 queries, whole ms each): plain search "
        f"{took['raw-search']['mean']:.2f} ms, PIT search sorted by _shard_doc "
        f"{took[SAME_REQUESTS]['mean']:.2f} ms; open_point_in_time round trip "
        f"{outcome.costs['open_point_in_time_ms']['median']:.2f} ms (median). Most search "
        "contexts open on the node after a block or warm-up (the points in time it left open, "
        f"closed by the benchmark afterwards): {outcome.contexts_seen}"
    )
    for workload, rows in (outcome.profile or {}).items():
        report.profile_table(console, f"cProfile of cqrskit {workload}", rows, 12)


def colour(v: Variant) -> str:
    """The variant's colour in the charts."""
    return COLOURS.get(v.key, COLOURS[v.side])


def plot_latency(cdf: Axes, ms: Sequence[Measurement], title: str) -> None:
    """The distribution of the sequential latencies of ``ms``, every round pooled."""
    for m in ms:
        ordered = sorted(x for b in m.sequential for x in b.latencies_ms)
        ys = [(n + 1) / len(ordered) for n in range(len(ordered))]
        cdf.plot(ordered, ys, color=colour(m.variant), label=m.variant.label, lw=1.5)
        pooled = m.pooled()
        cdf.plot(pooled["p50_ms"], 0.5, "o", color=colour(m.variant), ms=5)
        cdf.plot(pooled["p99_ms"], 0.99, "^", color=colour(m.variant), ms=5)
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


def plot_rates(bars: Axes, run: cli.Run, outcome: Outcome, workload: str, title: str) -> None:
    """Queries per second of each variant of ``workload``, with one and several threads."""
    by_key = {m.variant.key: m for m in outcome.measurements}
    ms, base = (
        [m for m in outcome.measurements if m.variant.workload == workload],
        BASELINES[workload],
    )
    ratio = {(r["variant"], r["baseline"]): r for r in outcome.ratios}
    groups = [("1 thread", "")] + (
        [(f"{run.config.threads} threads", "_threaded")] * (run.config.threads > 1)
    )
    width, top = 0.8 / len(ms), 0.0
    for g, (_name, threaded) in enumerate(groups):
        for n, m in enumerate(ms):
            values, v = m.values("qps", bool(threaded)), m.variant
            median, x = statistics.median(values), g + (n - (len(ms) - 1) / 2) * width
            bars.bar(x, median, width * 0.92, yerr=[[median - min(values)], [max(values) - median]],
                     capsize=3, color=colour(v), label=v.label if g == 0 else None)  # fmt: skip
            if v.side == "cqrskit":
                text = f"{ratio[(v.key, base)][f'qps{threaded}'] or 0:.2f}x"
                if same := ratio.get((v.key, SAME_REQUESTS)):
                    text += f"\n({same[f'qps{threaded}'] or 0:.2f}x PIT)"
            elif v.key == base:
                text = "base"
            else:
                text = f"{median / by_key[base].median('qps', bool(threaded)):.2f}x"
            bars.annotate(f"{median:,.0f}\n{text}", (x, max(values)), xytext=(0, 3), fontsize=7,
                          textcoords="offset points", ha="center", va="bottom")  # fmt: skip
            top = max(top, *values)
    bars.set_xticks(range(len(groups)), [name for name, _ in groups], fontsize=9)
    bars.set_ylim(0, top * 1.3)
    bars.set_ylabel("queries per second (median of rounds)")
    bars.legend(fontsize=7, loc="upper left")
    bars.set_title(f"{title}: q/s, ratio to {base}", fontsize=9)


def save_chart(path: Path, run: cli.Run, outcome: Outcome) -> None:
    """Per query: latency distributions (left) and queries per second (right)."""
    config = run.config
    made = report.figure(12, 8.5)
    grid = made.add_gridspec(2, 2, width_ratios=[1.15, 1])
    titles = {
        "get": "get by id (OrderById vs es.get)",
        "search": f"full-text search in a group, {PAGE_SIZE} per page",
    }
    for row, workload in enumerate(WORKLOADS):
        ms = [m for m in outcome.measurements if m.variant.workload == workload]
        plot_latency(made.add_subplot(grid[row, 0]), ms, titles[workload])
        plot_rates(made.add_subplot(grid[row, 1]), run, outcome, workload, titles[workload])
    made.suptitle(
        f"cqrskit QueryBus vs raw elasticsearch client: {config.docs:,} docs per read model, "
        f"{config.queries:,} queries x {config.rounds} rounds in {config.blocks} interleaved "
        f"blocks, Elasticsearch {run.machine['elasticsearch']['version']}, "
        f"{run.machine['nproc']} CPUs, run {run.stamp}\nwhiskers: slowest and fastest round; "
        "label: median q/s and ratio to the raw baseline (search: and to the raw PIT + search, "
        "the framework's own requests)",
        fontsize=9,
    )
    report.save_figure(made, path)


# --- entry point --------------------------------------------------------------------


def measure(run: cli.Run) -> Outcome:
    """Fill the read models, check, run the rounds and the extras."""
    bench = Bench(run)
    fill, check = bench.fill(), bench.check()
    # The benchmark's own data (100,000s of ids, the query lists) is nothing a server
    # would hold: keep it out of the garbage collector's full passes.
    gc.collect()
    gc.freeze()
    try:
        measurements = bench.run_rounds()
    finally:
        gc.unfreeze()
    run.console.log("timing cqrskit's Python steps and the server's time")
    costs = bench.python_costs()
    outcome = Outcome(
        measurements, ratios_of(measurements), fill, check, costs, bench.contexts_seen
    )
    if run.config.profile:
        path = run.profile_path()
        outcome.profile, outcome.profile_path = bench.profile(path), str(path)
        run.console.log(f"profile saved to {path}")
    return outcome


OPTIONS = [
    cli.Opt("--docs", 100_000, "documents in each read model", least=1000),
    cli.Opt("--queries", 5000, "timed queries per variant and round", 1000, 1),
    cli.Opt("--warmup", 300, "untimed queries per variant before a round", least=0),
    cli.Opt("--rounds", 3, "interleaved rounds", least=1),
    cli.Opt("--blocks", 10, "blocks a round's queries are cut in; the variants take turns "
            "block by block", least=1),
    cli.Opt("--threads", 4, "threads of the concurrent batches (1: skip them)", least=1),
    cli.Opt("--fill-chunk", 5000, "documents per bulk request", least=1),
    cli.Opt("--seed", 7, "seed of the documents and queries"),
    cli.Opt("--profile", False, "cProfile the cqrskit calls (saves .prof)"),
]  # fmt: skip
MEDIANS = ("qps", "p50_ms", "p99_ms", "mean_ms", "client_cpu_us_per_query", "gc_us_per_query")
PACKAGES = ("cqrskit", "elasticsearch", "elastic-transport", "urllib3", "pydantic")
PACKAGES += ("pydantic-core", "orjson")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables and save the JSON and the chart."""
    config = cli.parse(__doc__, "1000 queries per round, not 5000", OPTIONS, argv)
    config.blocks = min(config.blocks, config.queries)
    run = cli.Run.start("queries", config, 180, ("elasticsearch",), ["indices"], packages=PACKAGES)
    es = run.machine["elasticsearch"]
    run.log(
        f"Elasticsearch at {run.settings.elasticsearch_url} ({es['detail']}); {config.docs:,} "
        f"documents per read model, {config.queries:,} queries x {config.rounds} rounds per "
        f"variant, index prefix {run.settings.index_prefix}"
    )
    with run.cleaning(indices=True):
        outcome = measure(run)
    print_tables(run, outcome)
    notes = {
        "index_prefix": run.settings.index_prefix,
        **NOTES,
        "groups": list(GROUPS),
        "interleaving": f"per round and workload, the queries are cut in {config.blocks} blocks; "
        "each block runs through every variant, one after the other, the order rotating from "
        "block to block; warm-up of every variant before the first block",
        "threaded": f"the same queries split over {config.threads} threads sharing one client "
        "(and one QueryBus)",
    }
    run.save(
        notes,
        lambda path: save_chart(path, run, outcome),
        fill=outcome.fill,
        check=outcome.check,
        variants=[
            {
                **asdict(m.variant),
                "sequential_rounds": [b.summary() for b in m.sequential],
                "threaded_rounds": [{**b.summary(), "threads": b.threads} for b in m.threaded],
                **{f"median_{k}": m.median(k) for k in MEDIANS},
                "median_qps_threaded": m.median("qps", True) if m.threaded else None,
                "pooled_sequential": m.pooled(),
            }
            for m in outcome.measurements
        ],
        ratios=outcome.ratios,
        python_costs_us={k: outcome.costs[k] for k in WORKLOADS},
        search_took_ms=outcome.costs["search_took_ms"],
        open_point_in_time_ms=outcome.costs["open_point_in_time_ms"],
        max_open_search_contexts_after_batch=outcome.contexts_seen,
        profile_top=outcome.profile,
        profile_file=outcome.profile_path,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
