"""Hypothesis strategies for hostile input: what an attacker or a broken client sends."""

from __future__ import annotations

from typing import Any

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

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
    st.sampled_from(FRAGMENTS),
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


def payloads(fields: list[str]) -> st.SearchStrategy[Any]:
    """Payloads for a command with ``fields``: wrong types, unknown fields, non-objects."""
    known = st.dictionaries(st.sampled_from(fields), json_values, max_size=len(fields))
    unknown = st.dictionaries(st.text(min_size=1, max_size=20), json_values, min_size=1, max_size=3)
    return st.one_of(
        known,
        st.builds(lambda a, b: {**a, **b}, known, unknown),
        json_values,
        st.integers(min_value=50, max_value=3000).map(deeply_nested),
    )
