"""A command's fingerprint is canonical: the same command hashes the same everywhere."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from uuid import UUID

from cqrskit import Command
from examples.shop import PlaceOrder, RegisterItem
from examples.shop.commands import AuthorisePayment, CancelOrder

REPO_ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent(
    """
    from cqrskit import Command

    class TagItems(Command):
        tags: set[str]
        labels: dict[str, frozenset[str]]

    print(TagItems(
        tags={"tea", "coffee", "cocoa", "mate", "rooibos", "chai"},
        labels={"b": {"x", "y", "z"}, "a": {"p", "q", "r"}},
    ).fingerprint())
    """
)


def test_fingerprint_of_a_set_field_is_the_same_under_every_hash_seed() -> None:
    """Issue 15, hole 7a: four processes gave four fingerprints for one command."""
    fingerprints = {
        subprocess.run(
            [sys.executable, "-c", SCRIPT],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in (0, 1, 2, 3, 42, 12345)
    }
    assert len(fingerprints) == 1, fingerprints


class Tagged(Command):
    tags: set[str]
    labels: dict[str, int]


def test_fingerprint_ignores_set_and_dict_order() -> None:
    one = Tagged(tags={"a", "b", "c"}, labels={"x": 1, "y": 2})
    other = Tagged.model_validate_json('{"labels": {"y": 2, "x": 1}, "tags": ["c", "a", "b"]}')
    assert one.fingerprint() == other.fingerprint()
    assert one.fingerprint() != Tagged(tags={"a", "b"}, labels={"x": 1, "y": 2}).fingerprint()


def _old_fingerprint(command: Command) -> str:
    digest = hashlib.sha256(command.command_type.encode())
    digest.update(b"\0")
    digest.update(command.model_dump_json().encode())
    return digest.hexdigest()


def test_fingerprints_of_commands_without_sets_or_dicts_are_unchanged() -> None:
    """Keys stored before the canonical form still match their retries."""
    commands: list[Command] = [
        PlaceOrder(
            customer_id='ada \u00e9\u2603 "q"',
            lines=[
                {"sku": "tea", "quantity": 2, "unit_price": "2.50"},
                {"sku": "mug", "quantity": 1, "unit_price": "7", "item_id": UUID(int=7)},
            ],
        ),
        RegisterItem(sku="tea", name="Tea</script>", quantity=0),
        AuthorisePayment(order_id=UUID(int=1), amount=Decimal("12.30")),
        CancelOrder(order_id=UUID(int=2), reason="\x00 control \n chars"),
    ]
    for command in commands:
        assert command.fingerprint() == _old_fingerprint(command), command


def test_fingerprint_tells_set_members_apart() -> None:
    assert (
        Tagged(tags={"a"}, labels={}).fingerprint() != Tagged(tags={"b"}, labels={}).fingerprint()
    )
