"""The checks on command and query arguments that msgspec does not make by itself.

msgspec validates types as it converts, but it lets through what a hostile client can use:
unknown fields inside nested dataclasses, integers beyond 64 bits, decimals as floats (``1e30``),
as NaN or Infinity, or with absurd exponents (``9E+999999`` is a valid Decimal whose arithmetic
overflows), and a string ending in a newline where a pattern ends in ``$`` (Python's ``$`` also
matches before a final newline, JSON Schema's does not). :func:`check` walks the decoded JSON
along the declared type before conversion and refuses those with an ``invalid`` error naming
the field.

:func:`state_checks` writes the same rules into the JSON schema of the argument types, so the
OpenAPI document says what is refused: ``additionalProperties: false``, 64-bit bounds, and the
decimal pattern. A decimal argument is a plain decimal string (:data:`DECIMAL_PATTERN`, at most
:data:`DECIMAL_MAX_LENGTH` characters: 28 significant digits at most, magnitude below 1e28); a
type may narrow that with its own ``pattern`` and ``maxLength`` in ``Meta(extra_json_schema=)``,
as :data:`runtime.Money` does, and that is the pattern checked.

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
from typing import Any

import msgspec.inspect as mi

from ..errors import InvalidInput, excerpt

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
DECIMAL_DIGITS = 28  # significant digits of a decimal argument (Python's default precision)
# Digits, an optional fraction and minus sign, no exponent: the 29 characters leave room for 28
# digits and the point, the integer part has at most 28 digits, so every decimal argument has
# at most 28 significant digits and a magnitude below 1e28 (down to 1e-27).
DECIMAL_PATTERN = rf"^-?[0-9]{{1,{DECIMAL_DIGITS}}}(\.[0-9]+)?$"
DECIMAL_MAX_LENGTH = DECIMAL_DIGITS + 1

Check = Callable[[Any], Any]  # returns the value to convert


class _Refused(Exception):
    """Raised (internally) by a check; the path is collected on the way out."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.parts: list[str] = []  # innermost first: "quantity", "[0]", "lines"


def check(data: Any, type_: Any) -> Any:
    """Raise :class:`InvalidInput` for what msgspec would accept but the runtime refuses; return
    ``data`` to convert, with integral floats in integer fields made integers (JSON Schema's
    ``integer`` includes ``1.0``, msgspec's ``int`` does not)."""
    checker = _compiled(type_)
    if checker is None:
        return data
    try:
        return checker(data)
    except _Refused as refused:
        field = _path(refused.parts)
        raise InvalidInput(
            field_message(field, refused.message), details={"field": field}
        ) from None


def field_message(field: str, message: str) -> str:
    """The message of an ``invalid`` error: the field first, said once (``$``: the body)."""
    return message if field == "$" else f"{field}: {message}"


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
        if isinstance(info.type, mi.DecimalType):
            narrowed = info.extra_json_schema or {}
            return _decimal(
                narrowed.get("pattern", DECIMAL_PATTERN),
                narrowed.get("maxLength", DECIMAL_MAX_LENGTH),
                narrowed.get("description"),
            )
        return _compile(info.type)
    if isinstance(info, mi.StrType) and info.pattern is not None and "$" in info.pattern:
        return _no_final_newline(info.pattern)
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
        return _decimal(DECIMAL_PATTERN, DECIMAL_MAX_LENGTH)
    return None


def _fields(info: mi.DataclassType | mi.StructType | mi.TypedDictType) -> Check:
    checks = {f.encode_name: _compile(f.type) for f in info.fields}

    def fields(data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # msgspec names the wrong type
        for key, value in data.items():
            if key not in checks:
                refused = _Refused("is not a field of this object (unknown fields are refused)")
                refused.parts.append(str(key)[:64])
                raise refused
            field_check = checks[key]
            if field_check is not None:
                try:
                    checked = field_check(value)
                except _Refused as refused:
                    refused.parts.append(key)
                    raise
                if checked is not value:
                    data[key] = checked  # the decoded body is the caller's own copy
        return data

    return fields


def _items(item: Check | None) -> Check | None:
    if item is None:
        return None

    def items(data: Any) -> Any:
        if isinstance(data, list):
            for i, value in enumerate(data):
                try:
                    checked = item(value)
                except _Refused as refused:
                    refused.parts.append(f"[{i}]")
                    raise
                if checked is not value:
                    data[i] = checked
        return data

    return items


def _items_by_position(checks: list[Check | None]) -> Check | None:
    if all(c is None for c in checks):
        return None

    def items(data: Any) -> Any:
        if isinstance(data, list):
            for i, (value, item) in enumerate(zip(data, checks, strict=False)):
                if item is not None:
                    try:
                        checked = item(value)
                    except _Refused as refused:
                        refused.parts.append(f"[{i}]")
                        raise
                    if checked is not value:
                        data[i] = checked
        return data

    return items


def _values(value_check: Check | None) -> Check | None:
    if value_check is None:
        return None

    def values(data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                try:
                    checked = value_check(value)
                except _Refused as refused:
                    refused.parts.append(f"[{excerpt(key, 32)}]")
                    raise
                if checked is not value:
                    data[key] = checked
        return data

    return values


def _int(data: Any) -> Any:
    if type(data) is float and data.is_integer():
        data = int(data)
    if type(data) is int and not INT_MIN <= data <= INT_MAX:
        raise _Refused("an integer must fit in 64 bits")
    return data


@functools.cache
def _ecma(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled so that ``$`` matches only at the very end, as JSON Schema's
    (ECMA-262) regular expressions do: ``$`` outside a character class becomes ``$(?!\\n)``."""
    out: list[str] = []
    in_class = escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "$" and not in_class:
            char = r"$(?!\n)"
        out.append(char)
    return re.compile("".join(out))


def _no_final_newline(pattern: str) -> Check:
    """msgspec checks the pattern with Python's ``$``, which a final newline also satisfies;
    refuse what only that lets through."""
    compiled = _ecma(pattern)

    def no_final_newline(data: Any) -> Any:
        if isinstance(data, str) and data.endswith("\n") and compiled.search(data) is None:
            raise _Refused(f"must match {pattern}, got {excerpt(data)}")
        return data

    return no_final_newline


def _decimal(pattern: str, max_length: int, description: str | None = None) -> Check:
    """Decimals travel as plain decimal strings of bounded length. A well-formed decimal that a
    narrower type refuses (``"0"`` for :data:`runtime.PositiveMoney`) is told the type's
    description rather than its regular expression."""
    compiled = _ecma(pattern)
    plain = _ecma(DECIMAL_PATTERN)

    def decimal(data: Any) -> Any:
        if not isinstance(data, str):
            if isinstance(data, int | float) and not isinstance(data, bool):
                raise _Refused('a decimal must be a string such as "19.90", not a JSON number')
            return data  # msgspec names the wrong type
        if len(data) > max_length or compiled.search(data) is None:
            if description and len(data) <= DECIMAL_MAX_LENGTH and plain.search(data):
                raise _Refused(f"must be {description}, got {excerpt(data)}")
            raise _Refused(
                f"a decimal must be a string such as 19.90 matching {pattern}, at most "
                f"{max_length} characters, got {excerpt(data)}"
            )
        return data

    return decimal


def state_checks(schema: Any) -> None:
    """Write the rules :func:`check` enforces into a JSON schema of argument types, in place:
    objects take no unknown properties, integers fit in 64 bits, and decimals follow
    :data:`DECIMAL_PATTERN` unless their type narrows it."""
    if isinstance(schema, list):
        for item in schema:
            state_checks(item)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        schema.setdefault("additionalProperties", False)
    elif kind == "integer":
        schema.setdefault("minimum", INT_MIN)
        schema.setdefault("maximum", INT_MAX)
    elif kind == "string" and schema.get("format") == "decimal":
        schema.setdefault("pattern", DECIMAL_PATTERN)
        schema.setdefault("maxLength", DECIMAL_MAX_LENGTH)
    for value in schema.values():
        if isinstance(value, dict | list):
            state_checks(value)
