"""Schema evolution of events: upcasters and renames, applied when reading, never by rewriting.

Stored events are immutable, so an event type changes by getting a new version
(``order.created.v1`` -> ``order.created.v2``) and the code keeps a way to read the old one: an
*upcaster* turns the data of one version into the data of the next, and a *rename* maps a type
name that is no longer used onto its successor. Reading applies them in a chain until it reaches
a type that has an evolve handler, so the handlers only ever see the current version.

Each step's target type is fixed when it is registered, so where a stored type ends up is known
without its data (:meth:`EventSchema.current_type`); the data is only touched by :meth:`upcast`.
Upcasters are pure functions of the data dict, like the rest of the domain. The same chain serves
aggregates and projections, so a read model never has to know about old versions either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import SchemaError
from ..wire.naming import split_event_type

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Step:
    target: str
    upcaster: Upcaster | None  # None: a rename, the data is kept as it is


def next_version(type_name: str) -> str:
    """``order.created.v1`` -> ``order.created.v2``."""
    name, version = split_event_type(type_name)
    return f"{name}.v{version + 1}"


class EventSchema:
    """The upcasters and renames of one aggregate's events."""

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._steps: dict[str, _Step] = {}

    def __bool__(self) -> bool:
        return bool(self._steps)

    def has_step(self, type_name: str) -> bool:
        return type_name in self._steps

    def add_upcaster(self, source: str, fn: Upcaster, *, target: str | None = None) -> None:
        """Register ``fn`` to turn ``source`` data into the data of ``target`` (default: the
        next version of ``source``)."""
        self._add(source, _Step(next_version(source) if target is None else target, fn))

    def add_rename(self, old: str, new: str) -> None:
        """Read events stored as ``old`` as if they had been stored as ``new``."""
        self._add(old, _Step(new, None))

    def _add(self, source: str, step: _Step) -> None:
        split_event_type(source)
        split_event_type(step.target)
        if source in self._steps:
            raise ValueError(f"{self._owner}: {source!r} already has an upcaster or a rename")
        if self.current_type(step.target) == source:
            raise ValueError(f"{self._owner}: {source!r} -> {step.target!r} would make a cycle")
        self._steps[source] = step

    def current_type(self, type_name: str) -> str:
        """The type a stored ``type_name`` reads as once every step has been applied."""
        while (step := self._steps.get(type_name)) is not None:  # no cycles: _add refuses them
            type_name = step.target
        return type_name

    def upcast(self, type_name: str, data: Any) -> tuple[str, Any]:
        """Apply the chain of steps from ``type_name``; return the final type and its data.

        A type without steps comes back unchanged, whether or not anything knows it: deciding
        that an unknown type is an error is the reader's business, since only it knows the
        stream sequence to name. An upcaster that fails raises :class:`SchemaError`.
        """
        original = type_name
        while (step := self._steps.get(type_name)) is not None:
            if step.upcaster is not None:
                if not isinstance(data, dict):
                    raise SchemaError(
                        f"{self._owner}: {type_name!r} data is {type(data).__name__}, not an "
                        "object, so it cannot be upcast",
                        details={"type": original, "step": type_name},
                    )
                try:
                    data = step.upcaster(dict(data))  # a copy: the stored data stays as read
                except Exception as exc:
                    raise SchemaError(
                        f"{self._owner}: upcasting {type_name!r} to {step.target!r} failed: "
                        f"{type(exc).__name__}: {exc}",
                        details={"type": original, "step": type_name, "target": step.target},
                    ) from exc
            type_name = step.target
        return type_name, data
