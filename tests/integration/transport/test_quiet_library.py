"""The runtime as a library: silent in a program that configured no logging."""

from __future__ import annotations

import subprocess
import sys

from runtime import EmbeddedServer

SCRIPT = """
import logging, sys
import anyio
from runtime import Client

if sys.argv[2] == "logging":
    logging.basicConfig(level=logging.DEBUG, format="%(name)s %(message)s")

async def main():
    async with Client.connect(sys.argv[1]):
        pass

anyio.run(main)
"""


def run_script(url: str, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, url, mode], capture_output=True, text=True, timeout=60
    )


async def test_a_client_prints_nothing_unless_the_program_configured_logging(
    nats_server: EmbeddedServer,
) -> None:
    """Client.connect writes nothing to stdout or stderr in a program without logging set up,
    and its lines reach the standard library's logging once the program configures it."""
    await nats_server.wait_ready()
    quiet = run_script(nats_server.url, "quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert (quiet.stdout, quiet.stderr) == ("", "")

    logged = run_script(nats_server.url, "logging")
    assert logged.returncode == 0, logged.stderr
    assert logged.stdout == ""
    assert "runtime.transport.connection nats_connecting" in logged.stderr
