"""Elasticsearch mappings derived from pydantic view models.

Strings are ``keyword`` (exact match, sorting, aggregations) unless marked
:data:`Text` (full-text, with a ``.raw`` keyword sub-field for sorting);
numbers, booleans and dates map to their obvious types; nested models map
to objects. ``Annotated[..., EsType({...})]`` or a projection's
``mapping_overrides`` replace any field's mapping outright.
"""

from __future__ import annotations

import datetime as dt
import enum
import types
import typing
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, Union, get_args, get_origin
from uuid import UUID

from pydantic import BaseModel

__all__ = ["METADATA_FIELD", "EsType", "Keyword", "Text", "mapping_for", "unmapped_fields"]

#: The field every read-model document keeps cqrskit's bookkeeping in.
METADATA_FIELD = "cqrskit"


@dataclass(frozen=True)
class EsType:
    """An explicit Elasticsearch mapping for one field: ``Annotated[str, EsType({...})]``."""

    mapping: dict[str, Any]


#: Full-text field, analysed with the standard analyzer, plus ``.raw`` keyword.
Text = EsType({"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 256}}})
#: Exact-match string (the default for ``str``).
Keyword = EsType({"type": "keyword", "ignore_above": 1024})

_SCALARS: dict[type, dict[str, Any]] = {
    str: Keyword.mapping,
    UUID: {"type": "keyword"},
    bool: {"type": "boolean"},
    int: {"type": "long"},
    float: {"type": "double"},
    Decimal: {"type": "double"},
    dt.datetime: {"type": "date"},
    dt.date: {"type": "date"},
}

_METADATA_MAPPING: dict[str, Any] = {
    "properties": {
        "position": {"type": "long"},
        "deleted": {"type": "boolean"},
        # Source aggregate id -> last applied version; ids are not field names
        # we want in the mapping, so the object is stored but not indexed.
        "sources": {"type": "object", "enabled": False},
    }
}


def mapping_for(
    model: type[BaseModel], overrides: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The index mapping (``{"dynamic": "strict", "properties": ...}``) of a view model.

    Raises:
        TypeError: a field's type has no obvious mapping; annotate it with
            :class:`EsType` or give an override.
    """
    properties = _properties(model, overrides or {})
    properties[METADATA_FIELD] = _METADATA_MAPPING
    return {"dynamic": "strict", "properties": properties}


def _properties(model: type[BaseModel], overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    hints = typing.get_type_hints(model, include_extras=True)
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key in overrides:
            properties[key] = overrides[key]
            continue
        explicit = [m for m in info.metadata if isinstance(m, EsType)]
        properties[key] = (
            explicit[0].mapping if explicit else _field(hints[name], f"{model.__name__}.{name}")
        )
    return properties


def _field(annotation: object, where: str) -> dict[str, Any]:
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        base, *extras = get_args(annotation)
        for extra in extras:
            if isinstance(extra, EsType):
                return extra.mapping
        return _field(base, where)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return _field(options[0], where)
        raise TypeError(f"{where}: a union of {options} has no single mapping; use EsType")
    if origin in (list, tuple, set, frozenset):
        (item, *_rest) = get_args(annotation) or (str,)
        return _field(item, where)
    simple = {dict: {"type": "flattened"}, Literal: Keyword.mapping}
    if origin in simple:
        return simple[origin]
    return _class_field(annotation, where)


def _class_field(annotation: object, where: str) -> dict[str, Any]:
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return {"properties": _properties(annotation, {})}
        if issubclass(annotation, enum.Enum):
            return Keyword.mapping
        for scalar, mapping in _SCALARS.items():
            if issubclass(annotation, scalar):  # bool before int, datetime before date
                return mapping
    raise TypeError(f"{where}: no Elasticsearch mapping for {annotation!r}; use EsType")


def unmapped_fields(wanted: dict[str, Any], have: dict[str, Any], prefix: str = "") -> list[str]:
    """The fields (dotted paths) of mapping ``wanted`` that mapping ``have`` lacks.

    An index's strict mapping refuses every document with such a field: a
    view that gained one needs an index built with its mapping.
    """
    present = have.get("properties") or {}
    missing: list[str] = []
    for name, spec in (wanted.get("properties") or {}).items():
        if name not in present:
            missing.append(f"{prefix}{name}")
        elif isinstance(spec, dict) and "properties" in spec:
            missing += unmapped_fields(spec, present[name], f"{prefix}{name}.")
    return missing
