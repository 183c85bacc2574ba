"""The Elasticsearch client's JSON: orjson, with the standard library's results."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from elasticsearch.serializer import JsonSerializer, NdjsonSerializer

from cqrskit import Settings
from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.adapters.elasticsearch import OrjsonNdjsonSerializer, OrjsonSerializer

DOCUMENT: dict[str, Any] = {
    "total": Decimal("7.10"),
    "placed_at": datetime(2026, 12, 2, 6, 30, 1, 250_000, tzinfo=UTC),
    "local": datetime(2026, 12, 2, 6, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    "naive": datetime(2026, 12, 2, 6, 30, 1),
    "day": date(2026, 12, 2),
    "order_id": UUID("0b5e4f0e-7c6a-4c55-9b64-6d7f2d1f9c11"),
    "name": "Grüße, 茶 \u2028",
    "lines": [{"sku": "tea", "quantity": 2, "unit_price": Decimal("3.5")}],
    "empty": None,
    "flags": [True, False],
}


@pytest.mark.parametrize(
    "value",
    [
        DOCUMENT,
        {1: "integer key", None: "null key"},  # orjson refuses these keys
        {"huge": 2**70},  # and integers beyond 64 bits
        {"lone": "\ud800"},  # and lone surrogates
    ],
    ids=["document", "non-string-keys", "big-integer", "surrogate"],
)
def test_orjson_encodes_what_the_standard_library_encodes(value: dict[Any, Any]) -> None:
    ours = OrjsonSerializer().dumps(value)
    theirs = JsonSerializer().dumps(value)
    assert ours == theirs or json.loads(ours) == json.loads(theirs)


def test_orjson_writes_dates_decimals_and_uuids_as_the_client_did() -> None:
    decoded = json.loads(OrjsonSerializer().dumps(DOCUMENT))
    assert decoded["total"] == 7.1
    assert decoded["placed_at"] == "2026-12-02T06:30:01.250000+00:00"
    assert decoded["local"] == "2026-12-02T06:30:00+05:30"
    assert decoded["naive"] == "2026-12-02T06:30:01"
    assert decoded["day"] == "2026-12-02"
    assert decoded["order_id"] == "0b5e4f0e-7c6a-4c55-9b64-6d7f2d1f9c11"
    assert decoded == json.loads(JsonSerializer().dumps(DOCUMENT))


def test_orjson_decodes_what_the_standard_library_decodes() -> None:
    body = JsonSerializer().dumps(DOCUMENT)
    assert OrjsonSerializer().loads(body) == json.loads(body)
    assert OrjsonSerializer().loads(b"") is None
    assert math.isnan(OrjsonSerializer().loads(b'{"x": NaN}')["x"])  # as the client's did


def test_ndjson_lines_match_the_standard_library() -> None:
    lines = [{"index": {"_index": "i", "_id": "a"}}, DOCUMENT, b'{"already":"encoded"}']
    ours = OrjsonNdjsonSerializer().dumps(lines)
    theirs = NdjsonSerializer().dumps(lines)
    assert [json.loads(x) for x in ours.splitlines()] == [
        json.loads(x) for x in theirs.splitlines()
    ]
    assert OrjsonNdjsonSerializer().loads(ours) == NdjsonSerializer().loads(theirs)


def test_the_client_uses_orjson_for_json_and_ndjson() -> None:
    client = es_backend.client(Settings.load())
    serializers = client.transport.serializers
    for mimetype in (
        "application/json",
        "application/vnd.elasticsearch+json",
        "application/x-ndjson",
        "application/vnd.elasticsearch+x-ndjson",
    ):
        assert type(serializers.get_serializer(mimetype)) in (
            OrjsonSerializer,
            OrjsonNdjsonSerializer,
        ), mimetype
    client.close()
