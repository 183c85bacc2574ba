"""Hypothesis strategies for hostile input: what an attacker or a broken client sends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from hypothesis import strategies as st

FRAGMENTS = [
    "'; DROP TABLE shop_events; --",
    '" OR 1=1 --',
    "<script>alert(1)</script>",
    "{{7*7}}",
    "${jndi:ldap://x/a}",
    "../../etc/passwd",
    "\x00",
    "\ud7ff\ue000",
    "NaN",
    "-1e309",
]

#: Strings that say nothing: empty, or only whitespace of several kinds.
BLANKS = ["", " ", "   ", "\t", "\n", "\r\n", " \t ", "\u00a0", "\u3000", "\u2003"]

scalars = st.one_of(
    st.none(),
    st.sampled_from([0, -1, 0.0, -0.5, [], {}]),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
    st.sampled_from(FRAGMENTS),
    st.sampled_from(BLANKS),
    st.builds(lambda n: "x" * n, st.integers(min_value=1_000, max_value=200_000)),
)

json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(
            st.one_of(st.text(max_size=20), st.sampled_from(FRAGMENTS)), inner, max_size=5
        ),
    ),
    max_leaves=30,
)


def deeply_nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"a": [value]}
    return value


def payloads(example: Example) -> st.SearchStrategy[Any]:
    """Payloads for a command like ``example``: wrong types, unknown fields,
    non-objects, and the example with nothing where something is meant."""
    fields = list(example.valid)
    known = st.dictionaries(st.sampled_from(fields), json_values, max_size=len(fields))
    unknown = st.dictionaries(st.text(min_size=1, max_size=20), json_values, min_size=1, max_size=3)
    return st.one_of(
        known,
        st.builds(lambda a, b: {**a, **b}, known, unknown),
        json_values,
        st.integers(min_value=50, max_value=3000).map(deeply_nested),
        nothing_where_something_is_meant(example).map(lambda case: case[1]),
    )


def _refusals_of(valid: Any, zero_ok: bool) -> st.SearchStrategy[Any]:
    """Values of ``valid``'s kind that must be refused where it is expected.

    Null for a required value; for a string, blanks; for a list or object,
    an empty one; for a positive number, zero (unless ``zero_ok``) and
    negatives.
    """
    kin: list[st.SearchStrategy[Any]] = [st.none()]
    if isinstance(valid, str):
        kin.append(st.sampled_from(BLANKS))
    elif isinstance(valid, list):
        kin.append(st.just([]))
    elif isinstance(valid, dict):
        kin.append(st.just({}))
    elif isinstance(valid, int | float) and not isinstance(valid, bool):
        negatives = st.integers(max_value=-1) | st.floats(max_value=-0.01, allow_infinity=False)
        kin.append(negatives if zero_ok else st.just(0) | st.just(0.0) | negatives)
    return st.one_of(kin)


def _paths(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every place in ``value`` (the root too) where a value could be replaced."""
    found = [path]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _paths(inner, (*path, index))
    return found


def _replace(value: Any, path: tuple[str | int, ...], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replace(value[head], tuple(rest), new)  # type: ignore[index,call-overload]
    return copy


def nothing_where_something_is_meant(
    example: Example,
) -> st.SearchStrategy[tuple[tuple[str | int, ...], Any]]:
    """``example.valid`` with one value, at any depth, replaced by its empty,
    blank, null or non-positive kin; with the path replaced.

    Fields named in ``example.zero_ok`` (a price, an initial stock) may be
    zero, so they only get negatives.
    """
    valid, zero_ok = example.valid, example.zero_ok

    @st.composite
    def build(draw: st.DrawFn) -> tuple[tuple[str | int, ...], Any]:
        path = draw(st.sampled_from(_paths(valid)))
        here = valid
        for part in path:
            here = here[part]
        named = next((p for p in reversed(path) if isinstance(p, str)), "")
        new = draw(_refusals_of(here, zero_ok=named in zero_ok))
        return path, _replace(valid, path, new)

    return build()


@dataclass(frozen=True)
class Example:
    """A valid payload of a command, and its fields that may be zero."""

    valid: dict[str, Any]
    zero_ok: frozenset[str] = field(default_factory=frozenset)


_ID = str(UUID(int=15))
_LINE = {"sku": "tea", "quantity": 2, "unit_price": 2.5}

#: A valid payload of each of the shop's commands, by command type.
SHOP_COMMANDS = {
    "PlaceOrder": Example({"customer_id": "ada", "lines": [_LINE]}, frozenset({"unit_price"})),
    "CancelOrder": Example({"order_id": _ID, "reason": "changed my mind"}),
    "RegisterItem": Example({"sku": "tea", "name": "Tea", "quantity": 5}, frozenset({"quantity"})),
    "RestockItem": Example({"item_id": _ID, "quantity": 3}),
    "ReserveStock": Example({"item_id": _ID, "order_id": _ID, "quantity": 1}),
    "ReleaseStock": Example({"item_id": _ID, "order_id": _ID}),
    "AuthorisePayment": Example({"order_id": _ID, "amount": 12.5}, frozenset({"amount"})),
    "CapturePayment": Example({"payment_id": _ID}),
    "RefusePayment": Example({"order_id": _ID, "reason": "card declined"}),
}
