"""`cqrs --help` and each command's help: paragraphs wrap at the terminal, not mid-sentence."""

from __future__ import annotations

from typing import Any

import typer.main

from runtime.cli import app


def commands(group: Any, prefix: str = "cqrs") -> list[tuple[str, Any]]:
    """Every command below ``group`` (typer carries its own click, so groups are duck-typed)."""
    found: list[tuple[str, Any]] = []
    for name, command in group.commands.items():
        found.append((f"{prefix} {name}", command))
        if hasattr(command, "commands"):
            found += commands(command, f"{prefix} {name}")
    return found


def test_no_help_text_breaks_a_paragraph_inside_a_sentence() -> None:
    """Every command's help has each paragraph on one line, so the terminal wraps it."""
    root = typer.main.get_command(app)
    broken = [
        name
        for name, command in commands(root)
        if any("\n" in paragraph for paragraph in (command.help or "").split("\n\n"))
    ]
    assert broken == []
