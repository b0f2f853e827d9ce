"""The checks on command and query arguments that msgspec does not make by itself.

msgspec validates types as it converts, but it lets through what a hostile client can use:
unknown fields inside nested dataclasses, integers beyond 64 bits, and decimals as floats
(``1e30``), as NaN or Infinity, or with absurd exponents (``9E+999999`` is a valid Decimal
whose arithmetic overflows). :func:`check` walks the decoded JSON along the declared type before
conversion and refuses those with an ``invalid`` error naming the field.

The walk runs on every command, so each type is compiled once into a tree of small check
functions that visit only what can be wrong (a type with nothing to check costs nothing), and
the field's path is put together only when something is refused.

Field names follow one convention everywhere: a dotted path without ``$.``, with list indexes
(``lines[0].quantity``); the body itself is ``$``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec.inspect as mi

from ..errors import InvalidInput, excerpt

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
DECIMAL_DIGITS = 28  # significant digits of a decimal argument (Python's default precision)
DECIMAL_EXPONENT = 28  # largest magnitude of its adjusted exponent: up to 10**28, down to 1e-28
DECIMAL_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,6})?")
_PLAIN_DECIMAL = DECIMAL_DIGITS  # a decimal this short, without exponent, is within bounds

Check = Callable[[Any], None]


class _Refused(Exception):
    """Raised (internally) by a check; the path is collected on the way out."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.parts: list[str] = []  # innermost first: "quantity", "[0]", "lines"


def check(data: Any, type_: Any) -> None:
    """Raise :class:`InvalidInput` for what msgspec would accept but the runtime refuses."""
    checker = _compiled(type_)
    if checker is None:
        return
    try:
        checker(data)
    except _Refused as refused:
        raise InvalidInput(refused.message, details={"field": _path(refused.parts)}) from None


def _path(parts: list[str]) -> str:
    path = ""
    for part in reversed(parts):
        path += part if part.startswith("[") or not path else "." + part
    return path or "$"


@functools.cache
def _compiled(type_: Any) -> Check | None:
    return _compile(mi.type_info(type_))


def _compile(info: mi.Type) -> Check | None:
    """The check for values of ``info``, or None when nothing about them needs checking."""
    if isinstance(info, mi.Metadata):
        return _compile(info.type)
    if isinstance(info, mi.DataclassType | mi.StructType | mi.TypedDictType):
        return _fields(info)
    if isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        return _items(_compile(info.item_type))
    if isinstance(info, mi.TupleType):
        return _items_by_position([_compile(t) for t in info.item_types])
    if isinstance(info, mi.DictType):
        return _values(_compile(info.value_type))
    if isinstance(info, mi.UnionType):
        kinds = [t for t in info.types if not isinstance(t, mi.NoneType)]
        return _compile(kinds[0]) if len(kinds) == 1 else None
    if isinstance(info, mi.IntType):
        return _int
    if isinstance(info, mi.DecimalType):
        return _decimal
    return None


def _fields(info: mi.DataclassType | mi.StructType | mi.TypedDictType) -> Check:
    checks = {f.encode_name: _compile(f.type) for f in info.fields}

    def fields(data: Any) -> None:
        if not isinstance(data, dict):
            return  # msgspec names the wrong type
        for key, value in data.items():
            if key not in checks:
                refused = _Refused(f"unknown field {excerpt(key)}")
                refused.parts.append(str(key)[:64])
                raise refused
            field_check = checks[key]
            if field_check is not None:
                try:
                    field_check(value)
                except _Refused as refused:
                    refused.parts.append(key)
                    raise

    return fields


def _items(item: Check | None) -> Check | None:
    if item is None:
        return None

    def items(data: Any) -> None:
        if isinstance(data, list):
            for i, value in enumerate(data):
                try:
                    item(value)
                except _Refused as refused:
                    refused.parts.append(f"[{i}]")
                    raise

    return items


def _items_by_position(checks: list[Check | None]) -> Check | None:
    if all(c is None for c in checks):
        return None

    def items(data: Any) -> None:
        if isinstance(data, list):
            for i, (value, item) in enumerate(zip(data, checks, strict=False)):
                if item is not None:
                    try:
                        item(value)
                    except _Refused as refused:
                        refused.parts.append(f"[{i}]")
                        raise

    return items


def _values(value_check: Check | None) -> Check | None:
    if value_check is None:
        return None

    def values(data: Any) -> None:
        if isinstance(data, dict):
            for key, value in data.items():
                try:
                    value_check(value)
                except _Refused as refused:
                    refused.parts.append(f"[{excerpt(key, 32)}]")
                    raise

    return values


def _int(data: Any) -> None:
    if type(data) is int and not INT_MIN <= data <= INT_MAX:
        raise _Refused("an integer must fit in 64 bits")


def _decimal(data: Any) -> None:
    """Decimals travel as strings of a bounded, finite number."""
    if not isinstance(data, str):
        if isinstance(data, int | float) and not isinstance(data, bool):
            raise _Refused('a decimal must be a string such as "19.90", not a JSON number')
        return  # msgspec names the wrong type
    text = data.strip()
    if len(text) > 2 * DECIMAL_DIGITS + 16 or DECIMAL_TEXT.fullmatch(text) is None:
        raise _Refused(f"a decimal must be a finite number such as 19.90, got {excerpt(data)}")
    if len(text) <= _PLAIN_DECIMAL and "e" not in text and "E" not in text:
        return  # at most 28 characters and no exponent: within every bound
    value = Decimal(text)
    if len(value.as_tuple().digits) > DECIMAL_DIGITS or (
        value != 0 and abs(value.adjusted()) > DECIMAL_EXPONENT
    ):
        raise _Refused(
            f"a decimal has at most {DECIMAL_DIGITS} significant digits and a magnitude "
            f"between 1e-{DECIMAL_EXPONENT} and 1e{DECIMAL_EXPONENT}, got {excerpt(data)}"
        )
