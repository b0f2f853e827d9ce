"""An application: the aggregates, projections and process managers one set of processes serves.

The CLI finds them through an app spec: comma-separated ``module:attribute`` references, each to
an aggregate, projection or process manager definition or a sequence of them. The default names
the example domain shipped with the runtime.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigurationError
from .aggregate import Aggregate
from .process_manager import ProcessManager
from .projection import Projection

DEFAULT_APP = "aggregates:AGGREGATES,projections:PROJECTIONS,aggregates:PROCESS_MANAGERS"


@dataclass(frozen=True)
class App:
    """The aggregates, projections and process managers one set of processes serves; what
    ``--app module:attribute`` names (a list of definitions, or one, works too).

    ::

        APP = App(aggregates=[account], projections=[balances], process_managers=[dormancy])
    """

    aggregates: Sequence[Aggregate[Any]] = ()
    projections: Sequence[Projection[Any]] = field(default_factory=tuple)
    process_managers: Sequence[ProcessManager[Any]] = field(default_factory=tuple)

    def aggregate(self, name: str) -> Aggregate[Any]:
        for aggregate in self.aggregates:
            if aggregate.name == name:
                return aggregate
        raise ConfigurationError(
            f"no aggregate {name!r}; this app defines {[a.name for a in self.aggregates]}"
        )

    def projection(self, name: str) -> Projection[Any]:
        for projection in self.projections:
            if projection.name == name:
                return projection
        raise ConfigurationError(
            f"no projection {name!r}; this app defines {[p.name for p in self.projections]}"
        )

    def process_manager(self, name: str) -> ProcessManager[Any]:
        for manager in self.process_managers:
            if manager.name == name:
                return manager
        raise ConfigurationError(
            f"no process manager {name!r}; this app defines "
            f"{[m.name for m in self.process_managers]}"
        )

    def select_aggregates(self, names: Iterable[str] | None) -> list[Aggregate[Any]]:
        return list(self.aggregates) if not names else [self.aggregate(n) for n in names]

    def select_projections(self, names: Iterable[str] | None) -> list[Projection[Any]]:
        return list(self.projections) if not names else [self.projection(n) for n in names]

    def select_process_managers(self, names: Iterable[str] | None) -> list[ProcessManager[Any]]:
        if not names:
            return list(self.process_managers)
        return [self.process_manager(n) for n in names]


def _resolve(ref: str) -> Any:
    """The value ``module:attribute`` names (``module`` alone means ``module:APP``)."""
    module_name, _, attr = ref.partition(":")
    attr = attr or "APP"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigurationError(
                f"cannot load {module_name}:{attr}: no module named {exc.name!r} on the import "
                "path; run the command in the directory that holds the package, install it "
                "(pip install -e .) or add its directory to PYTHONPATH"
            ) from None
        raise ConfigurationError(
            f"cannot load {module_name}:{attr}: importing {module_name} failed: {exc}"
        ) from None
    except ConfigurationError:
        raise  # a definition the runtime refused, which names itself
    except Exception as exc:  # the user's module may fail at import in any way
        raise ConfigurationError(
            f"cannot load {module_name}:{attr}: importing {module_name} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        public = sorted(n for n in vars(module) if n.isupper())
        raise ConfigurationError(
            f"cannot load {module_name}:{attr}: module {module_name!r} has no attribute {attr!r}"
            + (f" (its upper-case names: {', '.join(public)})" if public else "")
        ) from None


def load_app(spec: str = DEFAULT_APP) -> App:
    """Import the definitions an app spec names."""
    aggregates: list[Aggregate[Any]] = []
    projections: list[Projection[Any]] = []
    managers: list[ProcessManager[Any]] = []
    for ref in filter(None, (part.strip() for part in spec.split(","))):
        value = _resolve(ref)
        if isinstance(value, App):
            aggregates += value.aggregates
            projections += value.projections
            managers += value.process_managers
            continue
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, Aggregate):
                aggregates.append(item)
            elif isinstance(item, Projection):
                projections.append(item)
            elif isinstance(item, ProcessManager):
                managers.append(item)
            else:
                raise ConfigurationError(
                    f"{ref!r} holds {item!r}, not an aggregate, projection or process manager"
                )
    return App(tuple(aggregates), tuple(projections), tuple(managers))
