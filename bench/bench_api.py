"""The query side over HTTP: the async API under read-your-writes load, and how fresh it reads.

The shop's API (``examples/shop/api.py``) on uvicorn, with the relay and an
``order_summaries`` worker as processes (``bench/README.md``, "API"):

1. **Isolation.** A plain ``GET /orders/{id}``, alone, then while
   ``--waiters`` read-your-writes requests wait (for a position nobody
   writes, up to ``--wait`` s each). The same-run baseline is the same
   endpoint served blocking (``def``, on ``QueryBus``, in FastAPI's thread
   pool), as the shop served it before.
2. **Freshness.** Commands at ``--rate`` per second (sent in process, by
   ``--writers`` threads) while ``--readers`` HTTP clients each place an
   order (``POST /orders``) and list it back with
   ``min_position`` (a search, so it must be searchable): accepted ->
   answered p50/p99, the rate achieved, and Elasticsearch's refreshes per
   second of the index, at each reader count: the refreshes must not grow
   with the query rate.

Run from the repository root::

    .venv/bin/python bench/bench_api.py [--quick]
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from _kit import REPO_ROOT, cli, report
from _kit.harness import ProcessPipeline, wait_until
from _kit.machine import pipeline_settings
from _kit.measure import quantiles_ms
from _kit.product import IndexNames, Runtime, es_backend
from fastapi import FastAPI

from cqrskit import CommandBus, Settings
from examples.shop import OrderLine, PlaceOrder, ShopApp, handlers
from examples.shop.queries import OrderById, queries

LINE = {"sku": "tea", "quantity": 1, "unit_price": "2.00"}
ORDER_LINE = OrderLine.model_validate(LINE)
NOTES = {
    "what": "uvicorn, one process, serving the shop's API on the run's own schema, topics "
    "and indices; the relay and one order_summaries worker as processes; the load from "
    "this process, with httpx's async client",
    "isolation": "plain GET /orders/{id} latency alone, then while the waiters wait for "
    "a position nobody writes (stale=flag); the blocking API is the same endpoint as a "
    "def on QueryBus, in FastAPI's thread pool (40 threads)",
    "freshness": "accepted -> answered: from the POST's response to the response of "
    "GET /orders?customer_id=...&min_position=<its position>; refreshes: the index's "
    "refresh total from _stats over the phase",
}


def create_blocking_app() -> FastAPI:
    """The baseline: the order endpoint as a blocking ``def`` on the blocking bus."""
    bus = Runtime(Settings.load()).query_bus(queries)
    app = FastAPI()

    @app.get("/orders/{order_id}")
    def order(order_id: UUID, min_position: int | None = None, wait: float | None = None) -> Any:
        answer = bus.ask(
            OrderById(order_id=order_id), min_position=min_position, wait=wait, on_stale="flag"
        )
        return answer.value.model_dump(mode="json") if answer.value else None

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One uvicorn process serving ``factory`` on the pipeline's settings."""

    def __init__(self, pipeline: ProcessPipeline, factory: str, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "--factory", factory, "--app-dir", "bench",
                "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
                "--log-level", "warning",
            ],
            env=pipeline.env,
            cwd=REPO_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_until(self.up, 60, f"{factory} to answer")

    def up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/docs", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


async def plain_latencies(client: httpx.AsyncClient, path: str, count: int) -> list[float]:
    took = []
    for _ in range(count):
        started = time.perf_counter()
        response = await client.get(path)
        took.append(time.perf_counter() - started)
        response.raise_for_status()
    return took


async def isolation(url: str, order_path: str, config: cli.Config) -> dict[str, Any]:
    """Plain GET latency alone, then with ``waiters`` read-your-writes requests waiting.

    The waiters have a client of their own, as other users would: a shared
    client's pool would make the plain requests queue on the client side.
    """
    limits = httpx.Limits(max_connections=config.waiters + 10)
    timeout = config.wait * 20
    async with (
        httpx.AsyncClient(base_url=url, timeout=timeout) as client,
        httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as others,
    ):
        await plain_latencies(client, order_path, 20)  # warm the connections
        alone = await plain_latencies(client, order_path, config.plain)
        far = {"min_position": 10**12, "wait": config.wait, "stale": "flag"}
        waiting = [
            asyncio.create_task(others.get(order_path, params=far)) for _ in range(config.waiters)
        ]
        await asyncio.sleep(0.5)  # the waits are sent and pending (a benchmark, not a test)
        started = time.perf_counter()
        loaded = await plain_latencies(client, order_path, config.plain)
        during = time.perf_counter() - started
        pending = sum(not t.done() for t in waiting)
        answered = await asyncio.gather(*waiting, return_exceptions=True)
    flagged = sum(
        1 for r in answered if isinstance(r, httpx.Response) and r.headers.get("X-Stale") == "true"
    )
    return {
        "alone": quantiles_ms(alone),
        "with_waiters": quantiles_ms(loaded),
        "waiters_pending_after_the_plain_requests": pending,
        "plain_requests_seconds": during,
        "waiters_flagged_stale": flagged,
    }


def paced_commands(bus: CommandBus, rate: float, seconds: float, writers: int) -> list[float]:
    """``PlaceOrder`` at ``rate`` per second for ``seconds``, from ``writers`` threads, in
    process (HTTP would be the load generator's limit, not the read side's); the times
    each was accepted."""
    total, counter, lock = int(rate * seconds), itertools.count(), threading.Lock()
    accepted: list[float] = []
    start = time.perf_counter()

    def writer() -> None:
        while True:
            with lock:
                i = next(counter)
            if i >= total or time.perf_counter() > start + seconds:
                return
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            bus.dispatch(PlaceOrder(customer_id=f"load-{i % 1000}", lines=[ORDER_LINE]))
            with lock:
                accepted.append(time.perf_counter())

    threads = [threading.Thread(target=writer, name=f"writer-{n}") for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return accepted


async def freshness(
    url: str, settings: Settings, phase: tuple[int, int, int], config: cli.Config
) -> dict[str, Any]:
    """Commands at ``rate``/s with ``readers`` reading their own writes back by search,
    and ``loopers`` asking read-your-writes searches (of a position long searchable) as
    fast as they are answered: more queries, which must not mean more refreshes."""
    rate, readers, loopers = phase
    es = es_backend.client(settings)
    alias = IndexNames.of(settings).alias("order_summaries")

    def refreshes() -> int:
        stats = es.indices.stats(index=alias, metric="refresh")
        return int(stats["_all"]["primaries"]["refresh"]["total"])

    latencies: list[float] = []
    looped = [0]
    stop_at = time.monotonic() + config.seconds
    limits = httpx.Limits(max_connections=readers + loopers + 10)
    application = ShopApp(settings)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def reader(n: int) -> None:
            body = {"customer_id": f"reader-{n}", "lines": [LINE]}
            while time.monotonic() < stop_at:
                placed = await client.post("/orders", json=body)
                placed.raise_for_status()
                answered_from = time.perf_counter()
                params = {"customer_id": f"reader-{n}", "min_position": placed.json()["position"],
                          "wait": 30, "page_size": 1}  # fmt: skip
                response = await client.get("/orders", params=params)
                response.raise_for_status()
                latencies.append(time.perf_counter() - answered_from)

        async def looper(n: int) -> None:
            params = {"customer_id": f"load-{n}", "min_position": 1, "page_size": 1}
            while time.monotonic() < stop_at:
                response = await client.get("/orders", params=params)
                response.raise_for_status()
                looped[0] += 1

        before, started = refreshes(), time.perf_counter()
        load = asyncio.to_thread(
            paced_commands,
            CommandBus(application, handlers),
            rate,
            config.seconds,
            config.writers,
        )
        accepted, *_ = await asyncio.gather(
            load, *(reader(n) for n in range(readers)), *(looper(n) for n in range(loopers))
        )
        seconds = time.perf_counter() - started
        after = refreshes()
    application.close()
    es.close()
    return {
        "readers": readers,
        "loopers": loopers,
        "asked_commands_per_second": rate,
        "achieved_commands_per_second": (len(accepted) + len(latencies)) / seconds,
        "reads_per_second": len(latencies) / seconds,
        "queries_per_second": (len(latencies) + looped[0]) / seconds,
        "accepted_to_answered": quantiles_ms(latencies),
        "refreshes_per_second": (after - before) / seconds,
        "seconds": seconds,
    }


def run_pipeline(run: cli.Run, logs: Path) -> dict[str, Any]:
    config = run.config
    pipeline = ProcessPipeline(run.tag, logs)
    try:
        pipeline.cli("db", "init")
        pipeline.start("relay", "relay", "run")
        pipeline.start("worker", "projections", "run", "order_summaries")
        found: dict[str, Any] = {"isolation": {}, "freshness": []}
        with ShopApp(pipeline.settings) as application:
            placed = CommandBus(application, handlers).dispatch(
                PlaceOrder(customer_id="ada", lines=[ORDER_LINE])
            )
        order_path = f"/orders/{placed.aggregate_id}"
        ready = {"min_position": placed.position, "wait": 60}
        for name, factory in (
            ("async", "examples.shop.api:create_app"),
            ("blocking", "bench_api:create_blocking_app"),
        ):
            server = Server(pipeline, factory, logs / f"{name}.log")
            try:

                def applied(url: str = f"{server.url}{order_path}") -> bool:
                    return httpx.get(url, params=ready, timeout=90).status_code == 200

                wait_until(applied, 300, "the worker to apply the first order")
                found["isolation"][name] = asyncio.run(isolation(server.url, order_path, config))
                run.console.log(f"{name} API: {found['isolation'][name]}")
                if name == "async":
                    for phase in phases(config):
                        row = asyncio.run(freshness(server.url, pipeline.settings, phase, config))
                        found["freshness"].append(row)
                        run.console.log(f"freshness (rate, readers, loopers) {phase}: {row}")
            finally:
                server.stop()
        return found
    finally:
        pipeline.stop_all()
        pipeline.clean_up(run.console, ["order_summaries"])


def print_tables(run: cli.Run, found: dict[str, Any]) -> None:
    config = run.config
    rows = []
    for name, label in (
        ("async", "async API (cqrskit.fastapi)"),
        ("blocking", "blocking API (baseline)"),
    ):
        entry = found["isolation"][name]
        alone, loaded = entry["alone"]["p99_ms"], entry["with_waiters"]["p99_ms"]
        rows.append([label, f"{entry['alone']['p50_ms']:.1f}", f"{alone:.1f}",
                     f"{entry['with_waiters']['p50_ms']:.1f}", f"{loaded:.1f}",
                     f"{loaded / alone:.2f}x"])  # fmt: skip
    report.table(
        run.console,
        f"Plain GET /orders/{{id}} alone and with {config.waiters} read-your-writes waits pending",
        "API | alone p50 ms | alone p99 ms | with waits p50 ms | with waits p99 ms | p99 ratio",
        rows,
    )
    report.table(
        run.console,
        "Read your writes: accepted -> answered by a search with min_position",
        "commands/s asked | readers + loopers | commands/s achieved | RYW queries/s | "
        "p50 ms | p99 ms | refreshes/s",
        (
            [
                f"{row['asked_commands_per_second']:,}",
                f"{row['readers']} + {row['loopers']}",
                f"{row['achieved_commands_per_second']:,.0f}",
                f"{row['queries_per_second']:,.0f}",
                f"{row['accepted_to_answered']['p50_ms']:.0f}",
                f"{row['accepted_to_answered']['p99_ms']:.0f}",
                f"{row['refreshes_per_second']:.1f}",
            ]
            for row in found["freshness"]
        ),
    )


def save_chart(path: Path, run: cli.Run, found: dict[str, Any]) -> None:
    made = report.figure(11, 4.5)
    left, right = made.subplots(1, 2)
    names = ["async", "blocking"]
    for offset, phase in ((-0.2, "alone"), (0.2, "with_waiters")):
        values = [found["isolation"][n][phase]["p99_ms"] for n in names]
        left.bar([i + offset for i in range(2)], values, width=0.4, label=phase.replace("_", " "))
    left.set_xticks(range(2), ["async API", "blocking API (baseline)"])
    left.set_yscale("log")
    left.set_ylabel("plain GET p99, ms (log)")
    left.legend(fontsize=8)
    left.set_title(f"{run.config.waiters} read-your-writes waits pending", fontsize=9)
    rows = found["freshness"]
    labels = [
        f"{r['asked_commands_per_second']}/s, {r['readers']}\n+{r['loopers']} loopers" for r in rows
    ]
    xs = range(len(rows))
    right.bar([x - 0.2 for x in xs], [r["accepted_to_answered"]["p50_ms"] for r in rows], 0.4,
              label="p50 accepted -> answered, ms")  # fmt: skip
    right.bar([x + 0.2 for x in xs], [r["accepted_to_answered"]["p99_ms"] for r in rows], 0.4,
              label="p99, ms")  # fmt: skip
    right.set_xticks(list(xs), labels, fontsize=8)
    right.set_ylabel("ms")
    twin = right.twinx()
    twin.plot(xs, [r["refreshes_per_second"] for r in rows], "s--", color="#d62728",
              label="refreshes/s")  # fmt: skip
    twin.plot(xs, [r["queries_per_second"] / 10 for r in rows], "o:", color="#2ca02c",
              label="RYW queries/s / 10")  # fmt: skip
    twin.set_ylim(bottom=0)
    twin.set_ylabel("per second")
    right.legend(fontsize=7, loc="upper left")
    twin.legend(fontsize=7, loc="upper right")
    right.set_title("read your writes: commands/s asked, readers + loopers", fontsize=9)
    made.suptitle(f"The query side over HTTP; {run.versions()}", fontsize=9)
    report.save_figure(made, path)


def phases(config: cli.Config) -> list[tuple[int, int, int]]:
    """(commands/s, readers reading their own writes, loopers adding queries) per phase:
    the asked rate with a few and with many readers, then a light rate without and with
    loopers, where the queries per second can grow a lot."""
    light = max(1, config.rate // 5)
    return [(config.rate, 10, 0), (config.rate, 50, 0), (light, 10, 0), (light, 10, 40)]


OPTIONS = [
    cli.Opt("--waiters", 200, "read-your-writes requests pending during the plain ones", least=1),
    cli.Opt("--wait", 6.0, "seconds each waiter waits", 3.0, 0.5),
    cli.Opt("--plain", 300, "plain requests timed per phase", 100, 10),
    cli.Opt("--rate", 500, "commands per second asked", least=1),
    cli.Opt("--seconds", 30.0, "seconds of each freshness phase", 10.0, 2.0),
    cli.Opt("--writers", 16, "threads sending the commands, in this process", least=1),
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables and save the JSON and the chart."""
    config = cli.parse(__doc__, "shorter phases", OPTIONS, argv)
    run = cli.Run.start("api", config, 140)
    run.log(f"{config.waiters} waiters; (commands/s, readers, loopers): {phases(config)}")
    with tempfile.TemporaryDirectory(prefix="bench-api-") as logs:
        found = run_pipeline(run, Path(logs))
    print_tables(run, found)
    run.save(
        NOTES,
        lambda path: save_chart(path, run, found),
        settings=pipeline_settings(run.settings),
        **found,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
