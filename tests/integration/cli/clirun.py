"""Running the ``cqrs`` CLI as a user does, in subprocesses, and finding the servers it starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
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


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a CLI run gets: the test's, without NATS_URL unless ``extra`` sets it."""
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("NATS_URL", None)
    return {**env, **(extra or {})}


def run_cli(
    *args: str, cwd: Path, timeout: float = 120, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CQRS, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=cli_env(env)
    )


def ctrl_c(process: subprocess.Popen[str], signum: int = signal.SIGINT) -> None:
    """Signal the process's whole process group, as a terminal does on Ctrl-C (SIGINT) and a
    supervisor may (SIGTERM); the process must have been started in a session of its own."""
    os.killpg(process.pid, signum)


@contextmanager
def running_dev(
    directory: Path, *args: str, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """`cqrs dev` in ``directory`` in a session of its own (a terminal's foreground process
    group), once it has logged that it is ready (the ready line's fields in ``process.ready``,
    the lines before it in ``process.started``); Ctrl-C on the way out. Its HTTP gateway takes
    any free port, since 8080 may be taken on a shared machine."""
    process = subprocess.Popen(
        [*CQRS, "dev", "--log-format", "json", "--gateway-port", "0", *args],
        cwd=directory,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=cli_env(env),
        start_new_session=True,
    )
    try:
        assert process.stderr is not None
        process.started = []  # type: ignore[attr-defined]
        for line in process.stderr:  # wait for the ready line, not for a time
            process.started.append(line)  # type: ignore[attr-defined]
            if '"dev_ready"' in line:
                process.ready = orjson.loads(line)  # type: ignore[attr-defined]
                break
        else:
            raise AssertionError(f"cqrs dev exited with {process.wait()}")
        yield process
    finally:
        if process.poll() is None:
            ctrl_c(process)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
