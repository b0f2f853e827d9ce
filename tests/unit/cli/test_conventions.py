"""CLI conventions without NATS: option parsing, exit codes, one-line errors, --version."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from runtime import errors
from runtime.cli import app, exits, main
from runtime.cli.common import run

EXIT_CODES_PAGE = Path(__file__).resolve().parents[3] / "docs" / "reference" / "errors.md"
runner = CliRunner()


def all_error_classes() -> list[type[errors.CqrsError]]:
    found, todo = [], [errors.CqrsError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


def test_version_prints_the_package_version() -> None:
    """`cqrs --version` prints the distribution's version and exits 0."""
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and re.fullmatch(r"cqrs-runtime \S+\n", result.stdout)


def test_shell_completion_is_offered() -> None:
    """The top-level help offers installing shell completion."""
    assert "--install-completion" in runner.invoke(app, ["--help"]).stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["worker", "--log-level", "bogus"],
        ["projector", "--log-format", "xml"],
        ["send", "user"],
        ["events", "user", "u-1", "--at-version", "-1"],
    ],
)
def test_bad_options_are_usage_errors_with_exit_64(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad option value or a missing argument is click's usage error (exit 64), no traceback."""
    monkeypatch.setattr(sys, "argv", ["cqrs", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == exits.USAGE
    err = capsys.readouterr().err
    assert "Usage:" in err and "Traceback" not in err


def test_every_error_code_has_an_exit_code_and_a_documented_line() -> None:
    """Each CqrsError code maps to an exit code, and the exit-code table of the errors reference
    says which."""
    codes = {cls.code for cls in all_error_classes()}
    assert codes == set(exits.BY_CODE)
    table = EXIT_CODES_PAGE.read_text()
    for code, status in exits.BY_CODE.items():
        assert re.search(rf"^\| {status} \|.*`{code}`", table, re.MULTILINE), code


def test_a_failure_inside_a_task_group_is_one_line_with_its_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An error raised in a task group is reported as its one line and its class's exit code."""

    async def fails() -> None:
        raise ExceptionGroup("tasks", [errors.Unreachable("cannot connect to NATS at x: down")])

    with pytest.raises(typer.Exit) as exit_info:
        run(fails)
    assert exit_info.value.exit_code == exits.UNAVAILABLE
    assert capsys.readouterr().err == "error (unreachable): cannot connect to NATS at x: down\n"


def test_an_unexpected_exception_is_internal_and_with_json_structured(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bug is exit 70 with one line, and --json adds the structured error on stdout."""

    async def broken() -> None:
        raise KeyError("oops")

    with pytest.raises(typer.Exit) as exit_info:
        run(broken, as_json=True)
    assert exit_info.value.exit_code == exits.SOFTWARE
    out, err = capsys.readouterr()
    assert err.startswith("error (internal): KeyError") and err.count("\n") == 1
    assert '"code":"internal"' in out


@pytest.mark.parametrize("command", ["worker", "projector", "send", "events", "query", "status"])
def test_connecting_commands_share_the_connection_options(command: str) -> None:
    """Every command that connects takes --nats (NATS_URL) and --connect-timeout
    (CQRS_CONNECT_TIMEOUT) under the same names."""
    group = typer.main.get_command(app)
    params = {p.name: p for p in group.commands[command].params}  # type: ignore[attr-defined]
    assert params["nats_url"].envvar == "NATS_URL"  # type: ignore[attr-defined]
    assert "--nats" in params["nats_url"].opts
    assert params["connect_timeout"].envvar == "CQRS_CONNECT_TIMEOUT"  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", ["dev", "worker", "projector", "processes", "gateway"])
def test_every_long_running_command_takes_the_startup_timeout(command: str) -> None:
    """Each long-running command takes --startup-timeout (and CQRS_STARTUP_TIMEOUT), so one
    setting serves a whole deployment."""
    group = typer.main.get_command(app)
    options = {
        name: param
        for param in group.commands[command].params  # type: ignore[attr-defined]
        for name in getattr(param, "opts", [])
    }
    assert "--startup-timeout" in options
    assert options["--startup-timeout"].envvar == "CQRS_STARTUP_TIMEOUT"
