"""Slow, idle and greedy clients against a real `cqrs gateway` process over real sockets on
loopback: they are cut off by deadlines and limits, and everyone else is still served.

Times the tests measure are printed (``pytest -s``), never asserted: each wait is on a
condition with a generous bound.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import anyio
import httpx
import nats
import pytest

from runtime.transport.embedded import EmbeddedServer
from tests.ports import free_port

from ..procs import WorkerProcess, wait_until, workers

APP = "aggregates:AGGREGATES,tests.integration.support:counter"
ATTACKERS = 2000  # connections with half-sent heads, about twice the connection cap
IDLE_TIMEOUT = 2.0
BODY_TIMEOUT, BODY_MIN_RATE, BODY_LENGTH = 1.0, 1024, 2048  # a body's deadline: 1 + 2048/1024 s
PER_CLIENT = 2


@dataclass(frozen=True)
class Gateway:
    host: str
    port: int
    metrics_port: int
    nats_url: str
    process: WorkerProcess

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def connect(self) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=30)

    async def closed(self, reason: str) -> int:
        """How many connections the gateway says it closed for ``reason``."""
        async with httpx.AsyncClient(timeout=10) as http:
            text = (await http.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        sample = f'cqrs_http_connections_closed_total{{reason="{reason}"}} '
        for line in text.splitlines():
            if line.startswith(sample):
                return int(float(line.removeprefix(sample)))
        return 0


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One nats-server, a worker for users and orders (counters are answered by the tests) and
    a gateway with the default header deadline and connection cap, and short other limits."""
    directory = tmp_path_factory.mktemp("slow-clients")
    server = EmbeddedServer(directory / "nats", port=free_port())
    server.start()
    port, metrics_port = free_port(), free_port()
    worker = WorkerProcess(directory / "worker", server.url, user=None, app="aggregates:AGGREGATES")
    gateway = WorkerProcess(
        directory / "gateway",
        server.url,
        user=None,
        command="gateway",
        app=APP,
        extra=[
            *("--port", str(port), "--metrics-port", str(metrics_port), "--timeout", "10"),
            *("--idle-timeout", str(IDLE_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT)),
            *("--body-min-rate", str(BODY_MIN_RATE), "--max-body-size", "65536"),
            *("--max-in-flight-per-client", str(PER_CLIENT)),
        ],
    )
    try:
        with workers(worker, gateway):
            anyio.run(server.wait_ready)
            anyio.run(worker.wait_ready)
            running = Gateway("127.0.0.1", port, metrics_port, server.url, gateway)
            anyio.run(_wait_healthy, running)
            yield running
    finally:
        server.stop()


async def _wait_healthy(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=5) as http:

        async def healthy() -> bool:
            assert gateway.process.process is not None
            if gateway.process.process.poll() is not None:
                raise RuntimeError(f"cqrs gateway exited early: {gateway.process.log_tail()}")
            try:
                return (await http.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(healthy, 60, "the gateway's /healthz", period=0.2)


def _is_closed(sock: socket.socket) -> bool:
    """Whether the peer has closed ``sock`` (whatever it sent first is read and dropped)."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        while sock.recv(65536):
            pass
        return True
    except BlockingIOError:
        return False
    except OSError:  # reset: closed as well
        return True
    finally:
        sock.settimeout(timeout)


def _read_all(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes (the socket's timeout bounds the wait)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _raise_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the hard limit on open files ({hard}) is below the {wanted} this needs")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def test_half_sent_heads_on_2000_connections_lock_nobody_out(gateway: Gateway) -> None:
    """With 2,000 connections holding half-sent heads, a fresh client's /healthz and command
    are answered, and the gateway closes every stalled connection (evicted at the cap, or at
    the header deadline)."""
    _raise_file_limit(ATTACKERS + 512)
    before = await gateway.closed("evicted") + await gateway.closed("header_timeout")
    stalled: list[socket.socket] = []
    try:
        for _ in range(ATTACKERS):
            sock = gateway.connect()
            stalled.append(sock)
            # A send may fail when the gateway already evicted the connection to make room.
            with contextlib.suppress(OSError):
                sock.sendall(b"POST /commands/user/u1/create HTTP/1.1\r\nHost: gateway\r\n")
        flooded = time.monotonic()
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            health = await http.get("/healthz")
            healthz_after = time.monotonic() - flooded
            command = await http.post(
                "/commands/user/fresh-1/create",
                json={"name": "Ada", "email": "ada@example.com", "role": "admin"},
            )
            command_after = time.monotonic() - flooded
        assert health.status_code == 200
        assert command.status_code == 200, command.text

        open_ = list(stalled)

        def all_closed() -> bool:
            open_[:] = [s for s in open_ if not _is_closed(s)]
            return not open_

        await wait_until(all_closed, 30, "the gateway to close every stalled connection", 0.2)
        closed_after = time.monotonic() - flooded
    finally:
        for sock in stalled:
            sock.close()
    after = await gateway.closed("evicted") + await gateway.closed("header_timeout")
    assert after - before >= ATTACKERS
    print(
        f"\n{ATTACKERS} stalled connections: /healthz answered after {healthz_after:.2f} s, "
        f"a command after {command_after:.2f} s, all closed after {closed_after:.2f} s"
    )


async def test_a_trickled_body_is_cut_off_at_its_deadline(gateway: Gateway) -> None:
    """A body sent a byte at a time, slower than the minimum rate, is answered 408 and its
    connection closed at the body's deadline, and counted."""
    before = await gateway.closed("body_timeout")
    sock = gateway.connect()
    head = (
        "POST /commands/user/trickler/create HTTP/1.1\r\nHost: gateway\r\n"
        f"Content-Type: application/json\r\nContent-Length: {BODY_LENGTH}\r\n\r\n"
    )
    sock.sendall(head.encode())
    started = time.monotonic()
    sent = 0
    with sock:
        while not _is_closed(sock):
            if time.monotonic() - started > 30:
                raise TimeoutError(f"still open after 30 s and {sent} bytes of a trickled body")
            try:
                sock.sendall(b" ")
            except OSError:
                break
            sent += 1
            await anyio.sleep(0.25)  # the trickle's pace: four bytes a second
        cut_after = time.monotonic() - started
    assert await gateway.closed("body_timeout") == before + 1
    print(f"\ntrickled body: cut after {sent} bytes, {cut_after:.2f} s")


async def test_a_trickled_body_is_answered_408(gateway: Gateway) -> None:
    """A request whose body stops short is answered 408 Request Timeout before the close, and
    the route it was for takes the disconnect quietly (no error logged)."""
    sock = gateway.connect()
    head = (
        "POST /commands/user/stopper/create HTTP/1.1\r\nHost: gateway\r\n"
        f"Content-Type: application/json\r\nContent-Length: {BODY_LENGTH}\r\n\r\n{{"
    )
    with sock:
        sock.sendall(head.encode())
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"code":"request_timeout"' in answer
    assert "gateway_request_failed" not in gateway.process.log_tail(100_000)


async def test_idle_connections_are_closed(gateway: Gateway) -> None:
    """A connection that never sends a byte, and a keep-alive connection after its response,
    are closed by the gateway at the idle timeout, silently."""
    before = await gateway.closed("idle_timeout")
    silent = gateway.connect()
    kept = gateway.connect()
    with silent, kept:
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        started = time.monotonic()
        answer = _read_all(kept)
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1") == 1
        assert _read_all(silent) == b""
        closed_after = time.monotonic() - started
    assert await gateway.closed("idle_timeout") >= before + 2
    print(f"\nidle connections closed after {closed_after:.2f} s (idle timeout {IDLE_TIMEOUT} s)")


@pytest.mark.parametrize(
    ("head", "status"),
    [
        pytest.param(
            "GET /healthz HTTP/1.1\r\n" + "".join(f"X-H{i}: v\r\n" for i in range(101)) + "\r\n",
            431,
            id="101-headers",
        ),
        pytest.param(
            "GET /healthz HTTP/1.1\r\nX-Big: " + "a" * 20_000 + "\r\n\r\n", 431, id="20k-header"
        ),
        pytest.param("GET /healthz?" + "a" * 9000 + " HTTP/1.1\r\n\r\n", 414, id="9k-url"),
        pytest.param(
            "GET /healthz HTTP/1.1\r\nX-Endless: " + "a" * 200_000, 431, id="endless-header"
        ),
    ],
)
async def test_oversized_heads_are_refused(gateway: Gateway, head: str, status: int) -> None:
    """A head with too many header lines, too large a header, too long a target, or a header
    line that never ends, is answered 431 or 414 and the connection closed."""
    sock = gateway.connect()
    with sock:
        # Refused while still sending, the send may fail: the answer is on its way already.
        with contextlib.suppress(OSError):
            sock.sendall(head.encode())
        answer = _read_all(sock)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    assert b"connection: close" in answer


async def test_pipelined_requests_are_answered_up_to_a_bound(gateway: Gateway) -> None:
    """Ten pipelined requests on one connection are all answered in order; a connection that
    pipelines forty at once is closed rather than buffered, and counted."""
    before = await gateway.closed("too_many_pipelined")
    request = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n"
    with gateway.connect() as sock:
        sock.sendall(request * 9 + request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        assert _read_all(sock).count(b"HTTP/1.1 200 ") == 10
    with gateway.connect() as sock:
        sock.sendall(request * 40)
        assert _read_all(sock).count(b"HTTP/1.1 200 ") < 40
    assert await gateway.closed("too_many_pipelined") == before + 1


async def test_one_client_cannot_take_every_request_slot(gateway: Gateway) -> None:
    """A client (here: an address) with its limit of requests in flight is answered 429 with
    Retry-After, while another client is still served."""
    nc = await nats.connect(gateway.nats_url)
    held: list[nats.aio.msg.Msg] = []

    async def hold(msg: nats.aio.msg.Msg) -> None:
        held.append(msg)

    await nc.subscribe("cmd.*.counter.>", cb=hold)  # as the server's partition mapping has it
    await nc.flush()
    rejected = json.dumps({"error": {"code": "rejected", "message": "held by the test"}})
    statuses: list[int] = []
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:

            async def add(counter: str, headers: dict[str, str] | None = None) -> None:
                response = await http.post(
                    f"/commands/counter/{counter}/add", json={"amount": 1}, headers=headers
                )
                statuses.append(response.status_code)

            async with anyio.create_task_group() as tg:
                for i in range(PER_CLIENT):
                    tg.start_soon(add, f"held-{i}")
                await wait_until(lambda: len(held) == PER_CLIENT, 30, "the held requests")
                over = await http.post("/commands/counter/over/add", json={"amount": 1})
                assert over.status_code == 429, over.text
                assert over.headers["retry-after"] == "1"
                assert over.json()["code"] == "busy"
                # Another address behind the trusted (loopback) proxy is a client of its own.
                other = {"X-Forwarded-For": "198.51.100.7"}
                tg.start_soon(add, "other", other)
                await wait_until(lambda: len(held) == PER_CLIENT + 1, 30, "the other client")
                for msg in held:
                    await msg.respond(rejected.encode())
        assert sorted(statuses) == [409] * (PER_CLIENT + 1)
    finally:
        await nc.close()
