"""One stack of real processes for the gateway tests: a nats-server running the generated
least-privilege accounts, a `cqrs worker`, a `cqrs projector` and a `cqrs gateway` (as the
generated `gateway` client user, with a tokens file), started once for the module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import anyio
import httpx
import pytest

from runtime.domain.app import load_app
from runtime.ops.permissions import UserPlan
from tests.ports import free_port

from ..procs import WorkerProcess, password, running, single_node, wait_until, workers

APP = "aggregates:AGGREGATES,projections:PROJECTIONS,tests.integration.support:counter"
ADMIN_TOKEN = "admin-token-0123456789"
USER_TOKEN = "user-token-0123456789"
MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class Stack:
    url: str  # the gateway's
    nats_url: str
    gateway: WorkerProcess

    def http(self, token: str | None = ADMIN_TOKEN) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=15)


async def wait_ready(url: str, gateway: WorkerProcess) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:

        async def ready() -> bool:
            assert gateway.process is not None
            if gateway.process.poll() is not None:
                raise RuntimeError(f"cqrs gateway exited early: {gateway.log_tail()}")
            try:
                return (await http.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(ready, 60, "the gateway's /readyz", period=0.2)


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    # A module may shorten the read-your-writes wait with STALE_TIMEOUT (seconds).
    stale_timeout = getattr(request.module, "STALE_TIMEOUT", 3)
    directory = tmp_path_factory.mktemp("gateway")
    node = single_node(directory / "nats", load_app(APP), UserPlan())
    tokens = directory / "tokens.json"
    tokens.write_text(
        json.dumps({ADMIN_TOKEN: ["*"], USER_TOKEN: ["user.*", "users.get_user_by_id"]})
    )
    port = free_port()
    worker = WorkerProcess(directory / "worker", node.url, app=APP)
    projector = WorkerProcess(
        directory / "projector",
        node.url,
        user="projector",
        command="projector",
        app=APP,
        extra=["--stale-timeout", str(stale_timeout)],  # read-your-writes waits, then "stale"
    )
    gateway = WorkerProcess(
        directory / "gateway",
        node.url,
        user="gateway",
        command="gateway",
        app=APP,
        extra=[
            *("--port", str(port), "--tokens-file", str(tokens)),
            *("--max-body-size", str(MAX_BODY), "--timeout", "5"),
        ],
    )
    with running([node]), workers(worker, projector, gateway):
        anyio.run(node.wait_listening)
        anyio.run(worker.wait_ready)
        anyio.run(projector.wait_ready)
        url = f"http://127.0.0.1:{port}"
        anyio.run(wait_ready, url, gateway)
        yield Stack(url, node.url, gateway)


def admin_password() -> str:
    return password("admin")
