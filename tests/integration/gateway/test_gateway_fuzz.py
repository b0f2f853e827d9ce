"""Schema-driven runs against the gateway: schemathesis generates requests from its own
/openapi.json, valid and invalid, and its checks find the document stating what the API
enforces, and no answer a server error."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.ports import free_port

from ..procs import REPO, WorkerProcess, workers
from .conftest import ADMIN_TOKEN, APP, Stack, wait_ready

# A Cqrs-Min-Seq ahead of the stream waits this long for the read model, then is `stale`: the
# runs below send such sequences (the coverage phase the largest there is).
STALE_TIMEOUT = 0.2


# A Cqrs-Min-Seq ahead of the stream is answered 503 `stale` (with Retry-After) by design, and
# the coverage phase sends the largest sequence there is; every other 5xx is a failure.
# One undeclared method per operation is enough to see a 405 with its Allow header; the default
# tries every method there is.
CONFIG = """
[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "503"]

[phases.coverage]
unexpected-methods = ["DELETE"]
"""
# The counter is the test domain's deliberately pathological aggregate (a handler that raises, a
# command that decides as many events as asked): its 500 and 504 are the point.
NOT_COUNTER = ("--exclude-operation-id-regex", "^command_counter_")
HOOKS = "tests.integration.gateway.schemathesis_hooks"


def schemathesis_run(url: str, directory: Path, *arguments: str) -> None:
    """Run the schemathesis CLI on the gateway's /openapi.json; fail with its report."""
    config = directory / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run"]
    command += [f"{url}/openapi.json", "--no-color", "--request-timeout", "15", *arguments]
    env = {**os.environ, "PYTHONPATH": str(REPO), "SCHEMATHESIS_HOOKS": HOOKS}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False, cwd=directory, env=env
    )
    report = done.stdout[-20_000:] + done.stderr[-2_000:]
    assert done.returncode == 0, report
    assert "No issues found" in report or "passed" in report, report


@pytest.fixture(scope="module")
def open_gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second `cqrs gateway` on the same stack, without tokens (as `cqrs dev` runs it)."""
    port = free_port()
    gateway = WorkerProcess(
        tmp_path_factory.mktemp("open-gateway"),
        stack.nats_url,
        user="gateway",
        command="gateway",
        app=APP,
        extra=["--port", str(port), "--timeout", "5"],
    )
    with workers(gateway):
        url = f"http://127.0.0.1:{port}"
        anyio.run(wait_ready, url, gateway)
        yield url


def test_the_schema_states_what_the_api_enforces(open_gateway: str, tmp_path: Path) -> None:
    """schemathesis's coverage and fuzzing phases with every check find nothing on any
    operation of a gateway without tokens: data valid by the schema is accepted, data invalid
    by it refused, no operation asks for a token it does not need, and every answer matches its
    documented status, headers and schema."""
    schemathesis_run(
        open_gateway,
        tmp_path,
        *("--phases", "coverage,fuzzing", "--checks", "all", "--max-examples", "5"),
        *NOT_COUNTER,
    )


def test_with_tokens_commands_and_queries_require_one(stack: Stack, tmp_path: Path) -> None:
    """With tokens the document requires a bearer token, and schemathesis finds a command and a
    query refusing a request without one (401) and accepting valid data with one (the token is
    checked by route, the same for every command and every query)."""
    checks = "missing_required_header,ignored_auth,positive_data_acceptance,not_a_server_error"
    schemathesis_run(
        stack.url,
        tmp_path,
        *("--phases", "coverage", "--checks", checks),
        *("--include-operation-id-regex", "^(command_user_create|query_users_get_user_by_id)$"),
        *("-H", f"Authorization: Bearer {ADMIN_TOKEN}"),
    )
