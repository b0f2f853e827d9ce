"""JSON on the wire (orjson) and typed values in the domain (msgspec conversion).

Bodies are encoded with orjson. Declared types (dataclasses or msgspec Structs) are filled from
decoded JSON by msgspec, which validates as it converts, so a wrong type or a missing field is an
``invalid`` error that names the field, and Decimal, datetime, UUID and enums round-trip exactly
(Decimals travel as strings so no precision is lost).
"""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Any, TypeVar

import msgspec
import orjson

from ..errors import InvalidInput
from .strict import check, field_message

T = TypeVar("T")


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, msgspec.Struct):
        return msgspec.to_builtins(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """Encode a value (dataclasses, Decimals, datetimes, UUIDs and enums included) as JSON."""
    return orjson.dumps(value, default=_default)


def canonical(value: Any) -> bytes:
    """JSON with sorted keys: equal values give equal bytes (for digests)."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_SORT_KEYS)


def loads(data: bytes | str) -> Any:
    """Decode JSON; raise :class:`InvalidInput` on malformed input."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}") from None


def loads_object(data: bytes) -> dict[str, Any]:
    """Decode a request body that must be a JSON object; an empty body is ``{}``."""
    if not data or data.isspace():
        return {}
    value = loads(data)
    if not isinstance(value, dict):
        raise InvalidInput(
            f"body must be a JSON object, got {json_kind(value)}", details={"field": "$"}
        )
    return value


def to_builtins(value: Any) -> Any:
    """The plain JSON-compatible form of a typed value (as it would appear on the wire)."""
    return msgspec.to_builtins(value, builtin_types=None, enc_hook=_default)


def convert(data: Any, type_: type[T], *, strict: bool = False, from_strings: bool = False) -> T:
    """Build a ``type_`` from decoded JSON; raise :class:`InvalidInput` naming the bad field.

    ``strict`` (client input: command and query arguments) also refuses unknown fields at every
    level, integers beyond 64 bits and unbounded or non-string decimals (:mod:`.strict`).
    ``from_strings`` also converts strings to the numbers, booleans and so on the type declares,
    as values from a URL's query string need.
    """
    if strict:
        data = check(data, type_)
    try:
        return msgspec.convert(data, type_, strict=not from_strings)
    except msgspec.ValidationError as exc:
        message, field = _described(str(exc))
        raise InvalidInput(message, details={"field": field}) from None


def _described(message: str) -> tuple[str, str]:
    """msgspec's message in JSON's words, without echoed values, and the field it names
    (``a.b[0].c``), e.g. ``lines[0].quantity: expected an integer, got a string``."""
    field = "$"
    if " - at `" in message:
        message, _, at = message.rpartition(" - at `")
        field = at.rstrip("`").removeprefix("$").removeprefix(".") or "$"
    if message.startswith("Object missing required field `"):
        name = message.removeprefix("Object missing required field `").rstrip("`")
        field = name if field == "$" else f"{field}.{name}"
        message = "is required"
    elif message.startswith("Invalid enum value "):
        message = "is not one of the allowed values"  # msgspec quotes the value, however large
    else:
        for name, words in JSON_TYPE_WORDS.items():
            message = message.replace(f"`{name}`", words)
        message = message[:1].lower() + message[1:]
    message = message if len(message) <= 200 else message[:197] + "..."
    return field_message(field, message), field


# msgspec's type names, as a JSON reader says them
JSON_TYPE_WORDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "null": "null",
    "array": "an array",
    "object": "an object",
    "decimal": "a decimal string",
    "datetime": "an RFC 3339 date-time string",
    "date": "a date string",
    "uuid": "a UUID string",
}


def json_kind(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words (``null``, not ``NoneType``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    kinds = {str: "a string", int: "a number", float: "a number", list: "an array"}
    return next((w for t, w in kinds.items() if isinstance(value, t)), "an object")
