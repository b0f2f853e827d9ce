"""Discovery as the generated ``admin`` user: the responders may reply only under the users' own
inbox prefixes, so other clients (the nats CLI) must use the prefix `cqrs deploy nats-config`
prints."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import nats
import orjson
from structlog.testing import capture_logs
from typer.testing import CliRunner

from aggregates import AGGREGATES
from runtime import run_worker
from runtime.cli import app as cli_app
from runtime.transport.connection import open_connection

from ..procs import NatsNode, password, wait_until
from .accounts import SCOPED, options


def printed_prefix(tmp_path: Path) -> str:
    result = CliRunner().invoke(cli_app, ["deploy", "nats-config", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    found = re.search(r"nats --user admin --inbox-prefix (\S+) micro ls", result.output)
    assert found, result.output
    return found.group(1)


async def test_admin_pings_the_services_with_the_inbox_prefix_nats_config_prints(
    node: NatsNode, tmp_path: Path
) -> None:
    """`$SRV.PING` from ``admin`` with the printed inbox prefix is answered by a worker on the
    generated accounts; with nats-py's (and the nats CLI's) default ``_INBOX`` the server
    refuses the worker's reply, which is why the prefix is printed."""
    prefix = await anyio.to_thread.run_sync(printed_prefix, tmp_path / "deploy")  # its own loop
    worker_nc = await open_connection(node.url, options("worker"))
    try:
        async with run_worker(worker_nc, AGGREGATES, SCOPED):
            admin = await nats.connect(
                node.url, user="admin", password=password("admin"), inbox_prefix=prefix
            )
            try:
                reply = await admin.request("$SRV.PING", b"", timeout=10)
            finally:
                await admin.close()
            assert orjson.loads(reply.data)["type"] == "io.nats.micro.v1.ping_response"

            with capture_logs() as logs:
                default = await nats.connect(node.url, user="admin", password=password("admin"))
                try:
                    await default.publish("$SRV.PING", b"", reply=default.new_inbox())
                    await default.flush()

                    def refused() -> bool:
                        errors = [str(e.get("error", "")).lower() for e in logs]
                        return any(
                            "permissions violation for publish" in e and "_inbox." in e
                            for e in errors
                        )

                    await wait_until(refused, 10, "the worker's reply to be refused")
                finally:
                    await default.close()
    finally:
        await worker_nc.close()
