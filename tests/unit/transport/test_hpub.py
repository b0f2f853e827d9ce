"""Commit headers encoded by the runtime reach the client's buffer as nats-py's own frame."""

from __future__ import annotations

from typing import Any

import pytest
from nats.aio.client import Client as NATS

from runtime.transport import hpub
from runtime.transport.hpub import decoded, hpub_frame, publish_encoded
from runtime.wire.headers import BadHeaderKey, encode_headers

HEADERS = {
    "Nats-Msg-Id": "e27901994279a97ebe288796a9263c9b",
    "Nats-Expected-Last-Subject-Sequence": "4",
    "Cqrs-Command-Id": "cmd-1",
    "Cqrs-Event-Types": "user.created.v1,user.role_changed.v1",
    "Cqrs-Recorded-At": "2026-12-06T22:22:04.504239+00:00",
    "traceparent": " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
    "tracestate": "a=1\r\nb=2",
    " ": "a blank key nats-py skips",
}


class Capturing(NATS):
    """A client that is never connected: what it would write is kept instead."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[bytes] = []
        self._flush_queue = None
        self._status = NATS.CONNECTED

    async def _send_command(self, cmd: bytes, priority: bool = False) -> None:
        self.frames.append(cmd)


async def nats_py_frame(subject: str, reply: str, payload: bytes, headers: Any) -> bytes:
    client = Capturing()
    await client.publish(subject, payload, reply=reply, headers=headers)
    return client.frames[-1]


async def test_the_frame_is_the_one_nats_py_writes_for_the_same_headers() -> None:
    """Keys, stripped values, line breaks made spaces, skipped blank keys: byte for byte."""
    expected = await nats_py_frame("events.user.u-1", "_INBOX.x.1", b'[{"a":1}]', HEADERS)
    block = encode_headers(HEADERS)
    assert hpub_frame("events.user.u-1", "_INBOX.x.1", block, b'[{"a":1}]') == expected
    client = Capturing()
    await publish_encoded(
        client, "events.user.u-1", b'[{"a":1}]', reply="_INBOX.x.1", header_block=block
    )
    assert client.frames == [expected]
    assert client.stats["out_msgs"] == 1


async def test_without_nats_py_internals_the_plain_publish_sends_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client lacking the internals gets ``publish`` with the headers decoded again."""
    monkeypatch.setattr(hpub, "DIRECT", False)
    headers = {"Nats-Msg-Id": "m-1", "Cqrs-Version": "3"}
    client = Capturing()
    block = encode_headers(headers)
    await publish_encoded(client, "events.user.u-1", b"[]", reply="r.1", header_block=block)
    assert decoded(block) == headers
    assert client.frames == [await nats_py_frame("events.user.u-1", "r.1", b"[]", headers)]


def test_a_key_nats_py_would_refuse_is_refused() -> None:
    """A key with a space or a colon is no header token."""
    with pytest.raises(BadHeaderKey):
        encode_headers({"Bad Key:": "x"})
