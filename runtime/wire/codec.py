"""JSON on the wire (orjson) and typed values in the domain (msgspec conversion).

Bodies are encoded with orjson. Declared types (dataclasses or msgspec Structs) are filled from
decoded JSON by msgspec, which validates as it converts, so a wrong type or a missing field is an
``invalid`` error that names the field, and Decimal, datetime, UUID and enums round-trip exactly
(Decimals travel as strings so no precision is lost).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from decimal import Decimal
from typing import Any, TypeVar

import msgspec
import orjson

from ..errors import InvalidInput

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
            f"body must be a JSON object, got {type(value).__name__}", details={"field": "$"}
        )
    return value


def to_builtins(value: Any) -> Any:
    """The plain JSON-compatible form of a typed value (as it would appear on the wire)."""
    return msgspec.to_builtins(value, builtin_types=None, enc_hook=_default)


def convert(data: Any, type_: type[T], *, forbid_unknown: bool = False) -> T:
    """Build a ``type_`` from decoded JSON; raise :class:`InvalidInput` naming the bad field."""
    if forbid_unknown and isinstance(data, dict) and dataclasses.is_dataclass(type_):
        unknown = sorted(data.keys() - _field_names(type_))
        if unknown:
            raise InvalidInput(
                f"unknown field `{unknown[0]}`", details={"field": unknown[0], "unknown": unknown}
            )
    try:
        return msgspec.convert(data, type_)
    except msgspec.ValidationError as exc:
        raise InvalidInput(str(exc), details={"field": _field_of(str(exc))}) from None


@functools.cache
def _field_names(type_: Any) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(type_))


def _field_of(message: str) -> str:
    """The ``$.path`` msgspec names in a validation message, or the missing field's name."""
    if " - at `" in message:
        return message.rsplit(" - at `", 1)[1].rstrip("`")
    if "missing required field `" in message:
        return "$." + message.rsplit("missing required field `", 1)[1].rstrip("`")
    return "$"
