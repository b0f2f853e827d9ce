"""Which app a command serves or talks about, so that ``--app`` is said once per project.

The first of these that is set wins:

1. ``--app`` on the command line, or the ``CQRS_APP`` environment variable;
2. the app of the ``cqrs dev`` running on this state directory (it records its app in
   ``<state dir>/app.json`` at start), when the command talks to that development server
   (no ``--nats``);
3. ``app = "..."`` in the ``[tool.cqrs]`` table of the nearest ``pyproject.toml`` (this directory
   or a parent);
4. the example domain shipped with the runtime.

The directory an app comes from (the working directory, the ``pyproject.toml``'s, the ``cqrs
dev``'s) goes first on the import path, as ``python -m`` would put it, so a package next to the
project file loads without being installed.
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import msgspec.inspect
import typer

from ..domain.app import DEFAULT_APP, App, load_app
from ..errors import ConfigurationError
from ..transport.devstore import DevStore

RECORD = "app.json"

SHAPES = (
    "--app takes comma-separated MODULE[:ATTRIBUTE] references (ATTRIBUTE defaults to APP); "
    "the attribute holds an App, a list of definitions or one aggregate, projection or process "
    "manager"
)


@dataclass(frozen=True)
class AppChoice:
    """An app spec and where it came from (said in errors, so a wrong one can be traced)."""

    spec: str
    origin: str
    path: Path | None = None
    problem: str | None = None  # why the origin holds no usable spec, raised on load

    def load(self) -> App:
        """Import the app, with its directory first on the import path."""
        if self.problem:
            raise ConfigurationError(self.problem)
        directory = str((self.path or Path.cwd()).resolve())
        if directory not in sys.path:
            sys.path.insert(0, directory)
        try:
            return load_app(self.spec)
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"{exc} (app {self.spec!r} from {self.origin}, imported with {directory} first "
                f"on the import path); {SHAPES}"
            ) from None


def choose(typer_ctx: typer.Context, state_dir: Path, *, dev_server: bool) -> AppChoice:
    """The app of this invocation (see the module's docstring for the order)."""
    given = typer_ctx.params.get("app_spec")
    # by name: typer ships its own copy of click, whose enum this is
    source = getattr(typer_ctx.get_parameter_source("app_spec"), "name", None)
    if given and source == "COMMANDLINE":
        return AppChoice(given, "--app")
    if given and source == "ENVIRONMENT":
        return AppChoice(given, "CQRS_APP")
    if dev_server and (recorded := recorded_app(state_dir)) is not None:
        return recorded
    return from_pyproject(Path.cwd()) or AppChoice(DEFAULT_APP, "the default (the example domain)")


def record(choice: AppChoice, state_dir: Path) -> None:
    """Note the app a ``cqrs dev`` serves, for the commands run against it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = str((choice.path or Path.cwd()).resolve())
    (state_dir / RECORD).write_text(json.dumps({"app": choice.spec, "path": path}))


def recorded_app(state_dir: Path) -> AppChoice | None:
    """The app of the ``cqrs dev`` running on ``state_dir``; None when none runs (a record left
    by one that has stopped is not believed, so it never outlives its server)."""
    if DevStore(state_dir).holder() is None:
        return None
    try:
        data = json.loads((state_dir / RECORD).read_text())
        return AppChoice(str(data["app"]), f"the cqrs dev of {state_dir}", Path(data["path"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def from_pyproject(start: Path) -> AppChoice | None:
    """``[tool.cqrs] app`` of the nearest ``pyproject.toml`` that has a ``[tool.cqrs]`` table."""
    for directory in (start.resolve(), *start.resolve().parents):
        project = directory / "pyproject.toml"
        if not project.is_file():
            continue
        try:
            table = tomllib.loads(project.read_text()).get("tool", {}).get("cqrs")
        except (OSError, tomllib.TOMLDecodeError) as exc:
            return AppChoice("", str(project), directory, f"cannot read {project}: {exc}")
        if table is None:
            continue
        app = table.get("app") if isinstance(table, dict) else None
        if not isinstance(app, str) or not app.strip():
            problem = f'{project}: [tool.cqrs] needs app = "module[:attribute]"'
            return AppChoice("", str(project), directory, problem)
        return AppChoice(app, f"[tool.cqrs] in {project}", directory)
    return None


def talks_to_dev_server(nats_url: str | None) -> bool:
    """True when a command connects to the development server (no URL given)."""
    return not (nats_url or os.environ.get("NATS_URL"))


def try_it(app: App) -> str | None:
    """A ``cqrs send`` line for the app's first aggregate, its arguments' required fields as
    placeholders (the OpenAPI document has their types)."""
    if not app.aggregates:
        return None
    aggregate = app.aggregates[0]
    names = aggregate.command_names
    if not names:
        return None
    command = next((n for n in _FIRST_COMMANDS if n in names), names[0])
    args_type = aggregate.command_args_type(command)
    body = ""
    info = msgspec.inspect.type_info(args_type) if args_type is not None else None
    if isinstance(info, msgspec.inspect.DataclassType | msgspec.inspect.StructType):
        required = [f.encode_name for f in info.fields if f.required]
        body = " '" + json.dumps({name: "..." for name in required}) + "'"
    return f"cqrs send {aggregate.name} {aggregate.name[:1]}-1 {command}{body}"


# the command that usually comes first in an aggregate's life, for the hint's example
_FIRST_COMMANDS = ("create", "open", "register", "place", "start", "add")
