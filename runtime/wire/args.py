"""Decoding request arguments from their JSON bytes, in one pass when the type allows it.

The general way (:func:`.codec.loads_object`, then :func:`.codec.convert` with ``strict``) parses
the body into Python objects, walks them for what msgspec would let through (:mod:`.strict`) and
converts them into the declared type: three passes, about 5 us for a one-field query, more than
the rest of answering it. :class:`ArgumentsDecoder` first tries msgspec's JSON decoder straight
into the declared type, with a second decoder into a mirror of its fields that refuses what
:mod:`.strict` refuses (unknown fields, integers beyond 64 bits): two passes in C, about 0.5 us.

The one-pass decoders only ever *accept* what the general way accepts, with the same value; any
body they refuse (malformed, empty, an integral float for an integer, a wrong type) goes the
general way, which accepts it or names the field as it always did. Types whose checks the mirror
cannot state (decimals, nested objects, lists) always go the general way.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

import msgspec
import msgspec.inspect as mi

from . import codec
from .strict import INT_MAX, INT_MIN, _ecma

T = TypeVar("T")

_Int64 = Annotated[int, msgspec.Meta(ge=INT_MIN, le=INT_MAX)]


class ArgumentsDecoder(Generic[T]):
    """Decode a request body (JSON bytes) into ``type_``, refusing what :func:`.codec.convert`
    with ``strict`` refuses, with the same ``invalid`` errors."""

    __slots__ = ("_mirror", "_typed", "type")

    def __init__(self, type_: type[T]) -> None:
        self.type = type_
        mirror = _mirror(type_)
        self._mirror = msgspec.json.Decoder(mirror) if mirror is not None else None
        self._typed = msgspec.json.Decoder(type_) if mirror is not None else None

    @property
    def one_pass(self) -> bool:
        """Whether bodies of this type are tried by msgspec's decoders first."""
        return self._typed is not None

    def decode(self, data: bytes) -> T:
        if self._typed is not None and self._mirror is not None:
            try:
                self._mirror.decode(data)
                value: T = self._typed.decode(data)
                return value
            except (msgspec.DecodeError, UnicodeError):
                pass  # the general way accepts it, or says why not
        return codec.convert(codec.loads_object(data), self.type, strict=True)


def _mirror(type_: Any) -> Any:
    """A Struct with the encoded field names of ``type_`` that refuses unknown fields and
    integers beyond 64 bits; every field optional and otherwise untyped (``type_`` itself checks
    the rest). None when ``type_`` has a check the mirror cannot state."""
    try:
        info = mi.type_info(type_)
    except (TypeError, ValueError):
        return None
    if not isinstance(info, mi.DataclassType | mi.StructType):
        return None
    fields: list[tuple[str, Any, Any]] = []
    for i, field in enumerate(info.fields):
        kind = _field_type(field.type)
        if kind is None:
            return None
        fields.append((f"f{i}", kind, msgspec.field(default=None, name=field.encode_name)))
    return msgspec.defstruct(
        f"{getattr(type_, '__name__', 'Arguments')}Mirror", fields, forbid_unknown_fields=True
    )


def _field_type(info: mi.Type) -> Any:
    """What the mirror declares for a field of type ``info`` (None: not stated by a mirror)."""
    if isinstance(info, mi.UnionType):
        kinds = [t for t in info.types if not isinstance(t, mi.NoneType)]
        if len(kinds) != 1:
            return Any  # :mod:`.strict` checks nothing inside a union of several types
        info = kinds[0]
    if isinstance(info, mi.Metadata):
        if isinstance(info.type, mi.DecimalType | mi.Metadata):
            return None
        info = info.type
    if isinstance(info, mi.IntType):
        return _Int64 | None
    if isinstance(info, mi.StrType) and info.pattern is not None and "$" in info.pattern:
        # :mod:`.strict`'s reading of the pattern: ``$`` only at the very end
        return Annotated[str, msgspec.Meta(pattern=_ecma(info.pattern).pattern)] | None
    return Any if _plain(info) else None


def _plain(info: mi.Type) -> bool:
    """Whether :mod:`.strict` checks nothing about values of ``info`` (msgspec checks it all)."""
    if isinstance(info, mi.StrType):
        return info.pattern is None or "$" not in info.pattern
    return isinstance(
        info,
        mi.BoolType
        | mi.FloatType
        | mi.NoneType
        | mi.AnyType
        | mi.DateTimeType
        | mi.DateType
        | mi.TimeType
        | mi.UUIDType
        | mi.EnumType
        | mi.LiteralType,
    )
