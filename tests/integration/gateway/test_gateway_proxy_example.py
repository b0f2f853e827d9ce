"""deploy/nginx/cqrs-gateway.conf: nginx accepts it, and requests pass through it to a real
`cqrs gateway`. Skipped, saying why, where nginx is not installed (`apt-get install
nginx-light` provides it)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runtime.transport.embedded import EmbeddedServer
from tests.ports import free_port

from ..procs import REPO, WorkerProcess, wait_until, workers
from ..support import system_tool

EXAMPLE = REPO / "deploy" / "nginx" / "cqrs-gateway.conf"
NGINX = system_tool("nginx", package="nginx-light")

pytestmark = pytest.mark.skipif(
    NGINX is None,
    reason="nginx is not installed here (apt-get install nginx-light), so the nginx example "
    "in deploy/ is not checked",
)


def _config(directory: Path, listen: int, upstream: int) -> Path:
    """The example on loopback ports, in the minimal main config a distribution has around it."""
    text = EXAMPLE.read_text()
    assert "listen 80;" in text and "server 127.0.0.1:8080;" in text
    text = text.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    text = text.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream};")
    (directory / "conf.d").mkdir(parents=True, exist_ok=True)
    (directory / "conf.d" / "cqrs-gateway.conf").write_text(text)
    main = directory / "nginx.conf"
    main.write_text(
        f"pid {directory}/nginx.pid;\n"
        f"error_log {directory}/error.log;\n"
        "events {}\n"
        "http {\n"
        f"    access_log {directory}/access.log;\n"
        f"    client_body_temp_path {directory}/body;\n"
        f"    proxy_temp_path {directory}/proxy;\n"
        f"    include {directory}/conf.d/*.conf;\n"
        "}\n"
    )
    return main


def _nginx(config: Path, *args: str) -> list[str]:
    assert NGINX is not None
    return [NGINX, "-p", str(config.parent), "-c", str(config), *args]


def test_nginx_accepts_the_example(tmp_path: Path) -> None:
    """`nginx -t` finds the example valid."""
    config = _config(tmp_path, free_port(), free_port())
    checked = subprocess.run(_nginx(config, "-t"), capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr


@pytest.fixture
def proxied(tmp_path: Path, nats_server: EmbeddedServer) -> Iterator[tuple[str, WorkerProcess]]:
    """A gateway on a free port and nginx with the example in front of it."""
    gateway_port, proxy_port = free_port(), free_port()
    gateway = WorkerProcess(
        tmp_path / "gateway",
        nats_server.url,
        user=None,
        command="gateway",
        extra=["--port", str(gateway_port)],
    )
    config = _config(tmp_path / "nginx", proxy_port, gateway_port)
    with workers(gateway):
        nginx = subprocess.Popen(
            _nginx(config, "-g", "daemon off;"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield f"http://127.0.0.1:{proxy_port}", gateway
        finally:
            nginx.terminate()
            nginx.wait(30)


async def test_requests_pass_through_the_example_to_the_gateway(
    proxied: tuple[str, WorkerProcess], nats_server: EmbeddedServer
) -> None:
    """/healthz is answered by the gateway through nginx, and a body over the gateway's size
    limit is refused by nginx already (413)."""
    url, gateway = proxied
    await nats_server.wait_ready()
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:

        async def through() -> bool:
            assert gateway.process is not None and gateway.process.poll() is None
            try:
                response = await http.get("/healthz")
            except httpx.TransportError:
                return False
            return response.status_code == 200 and response.json() == {"status": "ok"}

        await wait_until(through, 60, "/healthz through nginx", period=0.2)
        too_large = await http.post("/commands/user/u1/create", content=b"x" * 600_000)
        assert too_large.status_code == 413
