"""The query side's breaker and bulkheads, on the real Elasticsearch, really stopped.

The awaited bus is driven in this process so that what is measured is the
bus itself: a refused read costs microseconds, where a read sent to a dead
cluster costs a connection attempt, and one to a hung cluster a time-out.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable

import pytest

from cqrskit import CircuitOpen, Overloaded, ServiceUnavailable, Settings
from cqrskit.queries import AsyncQueryBus
from cqrskit.runtime import Runtime
from examples.shop.queries import OrderById, queries
from tests.integration.conftest import REPO_ROOT

ELASTICSEARCH = ["bash", str(REPO_ROOT / "scripts" / "elasticsearch.sh")]
ANY_ORDER = OrderById(order_id="7f6d3c1e-52a8-4f3e-9c0b-1d2e3f405162")  # type: ignore[arg-type]


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Await ``check`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


def holds(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """A plain condition, as :func:`until` awaits it."""

    async def check() -> bool:
        return predicate()

    return check


async def failures_until_open(bus: AsyncQueryBus) -> tuple[int, CircuitOpen]:
    """Ask until the breaker refuses: how many reads failed first, and the refusal."""
    failed = 0
    while True:
        try:
            await bus.ask(ANY_ORDER)
        except CircuitOpen as exc:
            return failed, exc
        except ServiceUnavailable:
            failed += 1


async def refusal_times(bus: AsyncQueryBus, rounds: int) -> list[float]:
    """Seconds each of ``rounds`` refused reads took, sorted."""
    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        with pytest.raises(CircuitOpen):
            await bus.ask(ANY_ORDER)
        took.append(time.perf_counter() - started)
    return sorted(took)


def guarded_settings(settings: Settings, unique_name: str) -> Settings:
    return settings.model_copy(
        update={
            "index_prefix": f"{unique_name}-",
            "query_breaker_window": 10,
            "query_breaker_min_calls": 5,
            "query_breaker_failure_rate": 0.5,
            "query_breaker_open_seconds": 2.0,
            "query_breaker_half_open_calls": 2,
            "query_max_waits": 20,
        }
    )


def test_a_stopped_cluster_opens_the_breaker_which_refuses_fast_then_closes_again(
    settings: Settings,
    unique_name: str,
    elasticsearch_up: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cqrskit.queries")
    guarded = guarded_settings(settings, unique_name)

    async def scenario() -> dict[str, object]:
        bus = Runtime(guarded).async_query_bus(queries)
        breaker = bus.guard("order_summaries").breaker
        try:
            for _ in range(3):  # no such read model yet: answered, with nothing
                assert (await bus.ask(ANY_ORDER)).value is None
            subprocess.run([*ELASTICSEARCH, "stop"], check=True, timeout=180)
            try:
                failed, first_refusal = await failures_until_open(bus)
                refused = await refusal_times(bus, 200)
                half_open = holds(lambda: breaker.state == "half-open")
                await until(half_open, 10, "the breaker to half-open")
                with pytest.raises(ServiceUnavailable):
                    await bus.ask(ANY_ORDER)  # the trial fails: open again
                assert breaker.state == "open"
            finally:
                subprocess.run([*ELASTICSEARCH, "start"], check=True, timeout=300)

            async def answered() -> bool:
                try:
                    await bus.ask(ANY_ORDER)
                except (CircuitOpen, ServiceUnavailable):
                    return False
                return True

            await until(answered, 60, "a trial read to succeed")
            await bus.ask(ANY_ORDER)  # the second trial
            return {
                "failed": failed,
                "refusal": first_refusal,
                "refused": refused,
                "state": breaker.state,
            }
        finally:
            await bus.aclose()

    outcome = asyncio.run(scenario())
    refused = sorted(outcome["refused"])  # type: ignore[call-overload]
    p99 = refused[int(len(refused) * 0.99) - 1]
    print(
        f"refused reads: median {statistics.median(refused) * 1e6:.0f} µs, p99 {p99 * 1e6:.0f} µs"
    )
    # 3 answered, then failures until half of the last calls failed: the third.
    assert outcome["failed"] == 3
    refusal = outcome["refusal"]
    assert isinstance(refusal, CircuitOpen)
    assert 0 < refusal.retry_after <= 2.0
    assert "order_summaries" in str(refusal)
    assert p99 < 0.005, f"a refused read took {p99 * 1000:.1f} ms"
    assert outcome["state"] == "closed"
    changes = [r.getMessage() for r in caplog.records if "circuit breaker" in r.getMessage()]
    transitions = [m.split("circuit breaker ")[1].split(":")[0] for m in changes]
    assert transitions[:3] == ["closed -> open", "open -> half-open", "half-open -> open"]
    assert transitions[-2:] == ["open -> half-open", "half-open -> closed"]


def test_with_the_waits_bulkhead_full_a_plain_query_answers_at_once(
    settings: Settings, unique_name: str, elasticsearch_up: None
) -> None:
    guarded = guarded_settings(settings, unique_name)

    async def timed(bus: AsyncQueryBus, rounds: int) -> list[float]:
        took = []
        for _ in range(rounds):
            started = time.perf_counter()
            await bus.ask(ANY_ORDER)
            took.append(time.perf_counter() - started)
        return took

    async def scenario() -> tuple[list[float], list[float], float]:
        bus = Runtime(guarded).async_query_bus(queries)
        waits_ = bus.guard("order_summaries").waits
        try:
            before = await timed(bus, 30)
            # Twenty reads waiting for a position nobody will write.
            waiting = [
                asyncio.create_task(bus.ask(ANY_ORDER, min_position=10**9, wait=30))
                for _ in range(guarded.query_max_waits)
            ]
            full = holds(lambda: waits_.in_use >= guarded.query_max_waits)
            await until(full, 10, "the waits to fill")
            started = time.perf_counter()
            with pytest.raises(Overloaded):
                await bus.ask(ANY_ORDER, min_position=10**9, wait=30)
            refused_in = time.perf_counter() - started
            during = await timed(bus, 30)
            assert waits_.in_use == guarded.query_max_waits, "the waits were still waiting"
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
            return before, during, refused_in
        finally:
            await bus.aclose()

    before, during, refused_in = asyncio.run(scenario())
    normal, full = statistics.median(before), statistics.median(during)
    print(
        f"plain query median {normal * 1000:.1f} ms before, {full * 1000:.1f} ms with the "
        f"waits full; one more wait refused in {refused_in * 1000:.2f} ms"
    )
    assert refused_in < 0.005
    # Queued behind the waits, a plain query would take their 30 s.
    assert max(during) < 1.0
    assert full < max(3 * normal, normal + 0.02)
