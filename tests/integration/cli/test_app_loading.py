"""Pointing the CLI at a user's own app: from its directory, CQRS_APP, [tool.cqrs], `cqrs dev`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from .clirun import run_cli, running_dev

BANK = Path(__file__).parents[3] / "docs" / "examples" / "bank"
# the console script, as a user runs it: unlike `python -m`, it puts no directory on the path
CQRS_SCRIPT = str(Path(sys.executable).parent / "cqrs")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the tutorial's bank project, without its `[tool.cqrs]` table."""
    root = tmp_path / "bank-project"
    shutil.copytree(BANK / "bank", root / "bank")
    return root


def cqrs(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "CQRS_APP")}
    return subprocess.run(
        [CQRS_SCRIPT, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**environ, "COLUMNS": "200", **env},
    )


def nats_config(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`cqrs deploy nats-config`, which loads the app and needs no server."""
    return cqrs("deploy", "nats-config", "--out", str(cwd / "deploy"), *args, cwd=cwd, **env)


def serves_bank(cwd: Path) -> bool:
    return "cmd.account." in (cwd / "deploy" / "nats" / "accounts.conf").read_text()


def test_an_app_in_the_working_directory_loads_by_its_module_name(project: Path) -> None:
    """`--app bank` finds the package in the working directory, as `python -m` would."""
    result = nats_config(project, "--app", "bank")
    assert result.returncode == 0, result.stderr
    assert serves_bank(project)


def test_cqrs_app_in_the_environment_is_used(project: Path) -> None:
    """CQRS_APP names the app for a command without --app."""
    result = nats_config(project, CQRS_APP="bank")
    assert result.returncode == 0, result.stderr
    assert serves_bank(project)


def test_the_pyproject_names_the_app_for_every_command_below_it(project: Path) -> None:
    """`[tool.cqrs] app` in pyproject.toml is the app of commands run in its directory or below,
    and its directory is on the import path."""
    (project / "pyproject.toml").write_text('[tool.cqrs]\napp = "bank"\n')
    below = project / "ops"
    below.mkdir()
    result = nats_config(below)
    assert result.returncode == 0, result.stderr
    assert serves_bank(below)


def test_a_missing_module_says_what_was_tried_and_what_to_do(project: Path) -> None:
    """A module not on the path is a configuration error naming the spec, its origin, the
    directory searched and the shapes --app takes."""
    result = nats_config(project, "--app", "bnak")
    assert result.returncode == 78
    line = result.stderr.strip()
    assert line.startswith("error (configuration): cannot load bnak:APP: no module named 'bnak'")
    assert "pip install -e ." in line and "from --app" in line and str(project) in line
    assert "MODULE[:ATTRIBUTE]" in line


def test_a_missing_attribute_lists_what_the_module_has(project: Path) -> None:
    """`--app bank:APPS` names the module's upper-case names, among them the right one."""
    result = nats_config(project, "--app", "bank:APPS")
    assert result.returncode == 78
    assert "has no attribute 'APPS' (its upper-case names: APP)" in result.stderr


def test_commands_next_to_a_dev_server_use_its_app(project: Path) -> None:
    """`cqrs dev --app bank` hints at the app's own commands, and `cqrs events` run beside it
    folds the bank's history with no --app of its own."""
    with running_dev(project, "--app", "bank") as dev:
        assert dev.ready["try_it"] == (  # type: ignore[attr-defined]
            'cqrs send account a-1 open \'{"owner": "..."}\''
        )
        opened = run_cli("send", "account", "a-1", "open", '{"owner": "Ada"}', cwd=project)
        assert opened.returncode == 0, opened.stderr
        past = run_cli("events", "account", "a-1", "--at-version", "1", "--json", cwd=project)
        assert past.returncode == 0, past.stderr
        assert orjson.loads(past.stdout.splitlines()[-1])["state"]["open"] is True


def test_the_tutorial_s_teller_talks_to_the_bank(tmp_path: Path) -> None:
    """The tutorial's other service (teller.py) sends commands and asks a read-your-writes
    query with the Client, printing what the tutorial shows."""
    shutil.copytree(BANK, tmp_path / "bank", ignore=shutil.ignore_patterns("tests", ".cqrs"))
    project = tmp_path / "bank"
    with running_dev(project):
        url = (project / ".cqrs" / "nats.url").read_text().strip()
        teller = subprocess.run(
            [sys.executable, "teller.py", url],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert teller.returncode == 0, teller.stderr
    assert teller.stdout == (
        "refused: the balance is 20.00, less than 25.00 (no_overdraft)\nbalance of t-1: 20.00\n"
    )
    assert teller.stderr == ""


def test_the_history_guide_s_audit_reads_the_past(tmp_path: Path) -> None:
    """The history guide's script (audit.py) folds an account's history to a version and diffs
    two versions, printing what the guide shows."""
    shutil.copytree(BANK, tmp_path / "bank", ignore=shutil.ignore_patterns("tests", ".cqrs"))
    project = tmp_path / "bank"
    with running_dev(project):
        url = (project / ".cqrs" / "nats.url").read_text().strip()
        for command, body in (("open", '{"owner": "Ada"}'), ("deposit", '{"amount": "50.00"}')):
            sent = run_cli("send", "account", "a-1", command, body, cwd=project)
            assert sent.returncode == 0, sent.stderr
        audit = subprocess.run(
            [sys.executable, "audit.py", url, "a-1"],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert audit.returncode == 0, audit.stderr
    assert audit.stdout == "after version 1: balance 0\nbalance: 0 -> 50.00\n"
    assert audit.stderr == ""


def test_a_user_package_named_aggregates_wins_over_the_example(tmp_path: Path) -> None:
    """A project's own `aggregates` package is the one `--app aggregates` loads, not the
    example domain installed with the runtime."""
    root = tmp_path / "own"
    shutil.copytree(BANK / "bank", root / "aggregates")
    result = nats_config(root, "--app", "aggregates")
    assert result.returncode == 0, result.stderr
    assert serves_bank(root)


def test_a_stopped_dev_s_app_is_not_used(project: Path) -> None:
    """Once `cqrs dev --app bank` has stopped, a command without --app no longer takes the bank
    from its record: `cqrs dev` itself then serves the project's default again."""
    with running_dev(project, "--app", "bank"):
        pass
    with running_dev(project) as dev:
        assert "cqrs send user" in dev.ready["try_it"]  # type: ignore[attr-defined]
