"""The shop demo: the whole pipeline, end to end, on the real local services.

Run by ``make demo`` after ``make services``. It initialises the event
store, starts the relay and the projection workers as real processes, sends
a few hundred commands, reads its own writes back through the query side,
prints the read models as tables, and stops what it started.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cqrskit import CommandBus, RuleViolated, Settings
from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters import postgres as pg_backend
from cqrskit.runtime import Runtime
from examples.shop import (
    AuthorisePayment,
    CancelOrder,
    CapturePayment,
    OrderLine,
    PlaceOrder,
    RegisterItem,
    ReleaseStock,
    ReserveStock,
    ShopApp,
    handlers,
)
from examples.shop.queries import ListOrders, LowStock, OrderStats, SearchProducts, queries

console = Console()
ROOT = Path(__file__).resolve().parents[2]
PROJECTIONS = ("order_summaries", "customer_orders", "stock_levels", "products")
PRODUCTS = [
    ("tea-green", "Green tea from Shizuoka", Decimal("4.50")),
    ("tea-black", "Black tea, Assam", Decimal("3.90")),
    ("coffee-arabica", "Arabica coffee beans", Decimal("9.80")),
    ("cocoa", "Dark cocoa powder", Decimal("6.20")),
    ("honey", "Wildflower honey", Decimal("7.40")),
]


def say(message: str) -> None:
    console.print(f"[bold cyan]demo[/bold cyan] {message}")


def cli(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = (ROOT / ".services" / f"demo-{args[0]}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "cqrskit.cli", *args], env=env, cwd=ROOT, stdout=log, stderr=log
    )


def send_commands(bus: CommandBus, orders: int) -> int:
    """Register products, then place, pay and cancel orders; return the last position."""
    rng = random.Random(42)
    items = {}
    last = 0
    for sku, name, _ in PRODUCTS:
        result = bus.dispatch(RegisterItem(sku=sku, name=name, quantity=500))
        items[sku] = result.aggregate_id
    for n in range(orders):
        sku, _, price = rng.choice(PRODUCTS)
        quantity = rng.randint(1, 4)
        line = OrderLine(sku=sku, quantity=quantity, unit_price=price)
        order = bus.dispatch(
            PlaceOrder(customer_id=f"customer-{n % 25:02d}", lines=[line]),
            idempotency_key=f"demo-order-{n}",
        )
        try:
            bus.dispatch(
                ReserveStock(item_id=items[sku], order_id=order.aggregate_id, quantity=quantity)
            )
        except RuleViolated:
            continue  # sold out: the order stays placed
        fate = rng.random()
        if fate < 0.6:
            payment = bus.dispatch(
                AuthorisePayment(order_id=order.aggregate_id, amount=price * quantity)
            )
            last = bus.dispatch(CapturePayment(payment_id=payment.aggregate_id)).position or last
        elif fate < 0.8:
            bus.dispatch(CancelOrder(order_id=order.aggregate_id, reason="changed my mind"))
            last = (
                bus.dispatch(ReleaseStock(item_id=items[sku], order_id=order.aggregate_id)).position
                or last
            )
        else:
            last = order.position or last
    return last


def clean_up(settings: Settings) -> None:
    """Drop what this run created, so that demos do not pile up."""
    with pg_backend.connect(settings) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{settings.postgres_schema}" CASCADE')
    admin = kafka_backend.admin(settings)
    prefix = f"{settings.topic_prefix}."
    topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
    for future in admin.delete_topics(topics).values() if topics else ():
        future.result(timeout=30)
    es = es_backend.client(settings)
    es.options(ignore_status=404).indices.delete(index=f"{settings.index_prefix}*")
    es.close()


def table(title: str, columns: list[str], rows: list[list[object]]) -> None:
    t = Table(title=title)
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*(str(cell) for cell in row))
    console.print(t)


def main() -> int:
    run = uuid.uuid4().hex[:6]
    env = {
        **os.environ,
        "CQRSKIT_APP": "examples.shop:ShopApp",
        "CQRSKIT_PROJECTIONS": "projections",
        "CQRSKIT_POSTGRES_SCHEMA": f"demo_{run}",
        "CQRSKIT_TOPIC_PREFIX": f"demo-{run}",
        "CQRSKIT_INDEX_PREFIX": f"demo-{run}-",
    }
    os.environ.update(env)
    settings = Settings.load()
    say(
        f"run {run}: schema {settings.postgres_schema}, "
        f"topics {settings.topic_prefix}.*, indices {settings.index_prefix}*"
    )
    say("initialising the event store (cqrskit db init)")
    subprocess.run(
        [sys.executable, "-m", "cqrskit.cli", "db", "init"], env=env, cwd=ROOT, check=True
    )
    say("starting the outbox relay and the projection workers as processes")
    processes = [cli("relay", "run", env=env), cli("projections", "run", *PROJECTIONS, env=env)]
    try:
        with ShopApp(settings) as app:
            bus = CommandBus(app, handlers)
            say("sending commands: 5 products, then 300 orders placed, reserved, paid or cancelled")
            started = time.monotonic()
            last = send_commands(bus, orders=300)
            say(
                f"sent the commands in {time.monotonic() - started:.1f}s: "
                f"events at positions 1 to {last} stored, each with its outbox entry"
            )
        query_bus = Runtime(settings).query_bus(queries)
        say(f"waiting for the read models to apply position {last} (read your writes)")
        started = time.monotonic()
        stats = query_bus.ask(OrderStats(), min_position=last, wait=120).value
        say(f"order summaries caught up in {time.monotonic() - started:.2f}s")
        table(
            "orders by status",
            ["status", "orders", "total"],
            [[k, v.orders, v.total] for k, v in stats.items()],
        )
        page = query_bus.ask(ListOrders(status="paid", sort="-total", page_size=8)).value
        table(
            f"largest paid orders (of {page.total})",
            ["order", "customer", "total", "items", "payment"],
            [
                [o.order_id[:8], o.customer_id, o.total, o.items, o.payment_status]
                for o in page.items
            ],
        )
        stock = query_bus.ask(LowStock(max_available=500), min_position=last, wait=120).value
        rows = [[s.sku, s.name, s.on_hand, s.reserved, s.available] for s in stock.items]
        table("stock", ["sku", "name", "on hand", "reserved", "available"], rows)
        found = query_bus.ask(SearchProducts(text="tea"), min_position=last, wait=120).value
        table("search: 'tea'", ["sku", "name"], [[p.sku, p.name] for p in found.items])
        say("cqrskit projections status")
        subprocess.run(
            [sys.executable, "-m", "cqrskit.cli", "projections", "status"],
            env=env,
            cwd=ROOT,
            check=True,
        )
        say("cqrskit status: the relay, and how long each stage took per event")
        subprocess.run(
            [sys.executable, "-m", "cqrskit.cli", "status"], env=env, cwd=ROOT, check=True
        )
    finally:
        say("stopping the relay and the workers")
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        if "--keep" not in sys.argv:
            say("removing this run's schema, topics and indices (--keep keeps them)")
            clean_up(settings)
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
