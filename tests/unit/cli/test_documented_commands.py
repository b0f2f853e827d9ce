"""Every `cqrs` command line the documentation shows names a command and options that exist."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from runtime.cli.reference import cqrs

ROOT = Path(__file__).resolve().parents[3]
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
SHELL_FENCES = {"sh", "bash", "console", "shell"}
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def shown_command_lines() -> list[tuple[str, str]]:
    """(page, line) for each `cqrs ...` line in a shell block and each `cqrs ...` code span."""
    found = []
    for page in PAGES:
        name = str(page.relative_to(ROOT))
        fence = None
        for line in page.read_text().splitlines():
            marker = re.match(r"\s*```(\w*)", line)
            if marker:
                fence = None if fence is not None else marker.group(1)
                continue
            if fence in SHELL_FENCES:
                command = re.sub(r"^\s*\$\s+", "", line)
                # a command after an environment assignment or a `&&` counts too
                for part in re.split(r"&&|;|\|\s", command):
                    part = re.sub(r"^\s*(\w+=\S*\s+)*", "", part)
                    if re.match(r"(\.venv/bin/)?cqrs\s", part):
                        found.append((name, part.strip()))
            elif fence is None:
                found += [(name, span) for span in re.findall(r"`(cqrs [^`]+)`", line)]
    return found


def is_group(command: Any) -> bool:
    return isinstance(getattr(command, "commands", None), dict)


def commands_named(words: list[str]) -> list[Any]:
    """The commands a documented line names: a word may offer alternatives (`a|b`)."""
    reached: list[Any] = [cqrs]
    for word in words:
        if word.startswith("-") or not re.fullmatch(r"[a-z][a-z0-9|_-]*", word):
            break
        deeper = [
            group.commands[choice]
            for group in reached
            if is_group(group)
            for choice in word.split("|")
            if choice in group.commands
        ]
        if not deeper:
            # past a leaf command the words are its arguments; under a group, a subcommand
            at_group = all(is_group(c) for c in reached)
            assert not at_group, f"no command {word!r} under {reached[0].name!r}"
            break
        reached = deeper
    return reached


def options_of(command: Any) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--"))
    return names


LINES = shown_command_lines()


def test_the_documentation_shows_command_lines() -> None:
    """The check below has something to check: the tutorial and the guides show `cqrs` lines."""
    pages = {page for page, _ in LINES}
    assert len(LINES) > 50 and "docs/tutorial/index.md" in pages and "README.md" in pages


@pytest.mark.parametrize(("page", "line"), LINES, ids=[f"{p}: {line}" for p, line in LINES])
def test_a_documented_command_line_matches_the_cli(page: str, line: str) -> None:
    """The subcommands a documented line names exist, and so does every `--option` it uses, on
    each command it may name, so a renamed command or flag fails here."""
    line = line.replace("\\|", "|")  # a table cell escapes the bar of alternatives
    words = line.replace("[", " ").replace("]", " ").split()[1:]
    for command in commands_named(words):
        unknown = set(OPTION.findall(line)) - options_of(command)
        assert not unknown, f"{page}: `cqrs {command.name}` has no {sorted(unknown)}"


def test_a_renamed_flag_would_be_caught() -> None:
    """The check itself fails on a flag the command does not have, and on an unknown command."""
    worker = commands_named(["worker"])
    assert [c.name for c in worker] == ["worker"]
    assert "--aggregates" in options_of(worker[0])
    assert "--aggregate" not in options_of(worker[0])
    with pytest.raises(AssertionError):
        commands_named(["wroker"])
