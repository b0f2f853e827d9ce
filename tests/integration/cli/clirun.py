"""Running the ``cqrs`` CLI as a user does, in subprocesses, and finding the servers it starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

CQRS = [sys.executable, "-m", "runtime.cli"]


def nats_servers_using(path: Path) -> list[int]:
    """Pids of nats-server processes whose command line mentions ``path``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            cmdline
            and cmdline[0].endswith(b"nats-server")
            and str(path).encode() in b" ".join(cmdline)
        ):
            pids.append(int(entry.name))
    return pids


def run_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("NATS_URL", None)
    return subprocess.run(
        [*CQRS, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


@contextmanager
def running_dev(directory: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`cqrs dev` in ``directory``, once it has logged that it is ready (the ready line's fields
    in ``process.ready``); Ctrl-C on the way out. Its HTTP gateway takes any free port, since
    8080 may be taken on a shared machine."""
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("NATS_URL", None)
    process = subprocess.Popen(
        [*CQRS, "dev", "--log-format", "json", "--gateway-port", "0", *args],
        cwd=directory,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:  # wait for the ready line, not for a time
            if '"dev_ready"' in line:
                process.ready = orjson.loads(line)  # type: ignore[attr-defined]
                break
        else:
            raise AssertionError(f"cqrs dev exited with {process.wait()}")
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
