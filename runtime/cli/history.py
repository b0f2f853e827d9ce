"""``cqrs events ... --at-version / --at / --diff``: an aggregate's past states, printed.

Kept apart from the ``events`` command itself so the write-side CLI module stays about commands;
this one is about reading the past through :class:`~runtime.write.history.AggregateHistory`.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from ..wire import codec
from ..write.history import AggregateHistory, FieldChange, PastState
from .common import console


def check_history_options(
    at_version: int | None, at: str | None, diff: tuple[int, int] | None
) -> bool:
    """Whether a past state was asked for; at most one of the three options may be given."""
    given = [
        name
        for name, value in (("--at-version", at_version), ("--at", at), ("--diff", diff))
        if value is not None
    ]
    if len(given) > 1:
        raise typer.BadParameter(f"{' and '.join(given)} cannot be combined")
    return bool(given)


async def show_history(
    history: AggregateHistory[Any],
    aggregate_id: str,
    *,
    at_version: int | None,
    at: str | None,
    diff: tuple[int, int] | None,
    as_json: bool,
) -> None:
    """Load the past state the options ask for and print it."""
    if diff is not None:
        before, after, changes = await history.diff(aggregate_id, diff[0], diff[1])
        print_diff(before, after, changes, as_json=as_json)
        return
    if at_version is not None:
        past = await history.at_version(aggregate_id, at_version)
    else:
        assert at is not None
        past = await history.at_time(aggregate_id, at)
    print_past_state(past, as_json=as_json)


def print_past_state(past: PastState[Any], *, as_json: bool) -> None:
    if as_json:
        print(codec.dumps(past.to_wire()).decode())
        return
    when = f"seq {past.seq}, stored {past.timestamp}" if past.seq else "before its first event"
    console.print(f"[cyan]{past.aggregate}/{past.id}[/cyan] at version {past.version} ({when})")
    console.print_json(codec.dumps(codec.to_builtins(past.state)).decode())


def print_diff(
    before: PastState[Any], after: PastState[Any], changes: list[FieldChange], *, as_json: bool
) -> None:
    if as_json:
        body = {
            "aggregate": before.aggregate,
            "id": before.id,
            "from_version": before.version,
            "to_version": after.version,
            "changes": [c.to_wire() for c in changes],
        }
        print(codec.dumps(body).decode())
        return
    title = f"{before.aggregate}/{before.id}: version {before.version} -> {after.version}"
    if not changes:
        console.print(f"{title}: no field changed")
        return
    table = Table(title=title)
    for column in ("field", f"v{before.version}", f"v{after.version}"):
        table.add_column(column, overflow="fold")
    for change in changes:
        table.add_row(change.path, _show(change.before), _show(change.after))
    console.print(table)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else codec.dumps(value).decode()


def print_history(commits: list, *, as_json: bool) -> None:  # type: ignore[type-arg]
    if as_json:  # JSON Lines: one event per line
        for commit in commits:
            for offset, event in enumerate(commit.events):
                print(
                    codec.dumps(
                        {
                            "version": commit.first_version + offset,
                            "seq": commit.seq,
                            "type": event.type,
                            "data": event.data,
                            "command_id": commit.command_id,
                            "correlation_id": commit.correlation_id,
                            "recorded_at": commit.recorded_at,
                        }
                    ).decode()
                )
        return
    table = Table(show_lines=False)
    for column in ("version", "seq", "type", "data", "command"):
        table.add_column(column, overflow="fold")
    for commit in commits:
        for offset, event in enumerate(commit.events):
            table.add_row(
                str(commit.first_version + offset),
                str(commit.seq),
                event.type,
                codec.dumps(event.data).decode(),
                commit.command,
            )
    if not commits:
        console.print("  (no events)")
    else:
        console.print(table)
