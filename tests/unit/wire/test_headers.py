"""A commit's header block is the encoding of its headers, however it is built."""

from __future__ import annotations

import msgspec
import pytest

from runtime.wire.envelope import Commit, StoredEvent
from runtime.wire.headers import encode_headers
from tests.commits import make_commit

PLAIN = make_commit(
    "order",
    "ord-1",
    "create",
    2,
    StoredEvent("order.created.v1", {"total": "3.00"}),
    StoredEvent("order.status_updated.v1", {"status": "paid"}),
    command_id="cmd-1",
)


@pytest.mark.parametrize(
    "commit",
    [
        PLAIN,
        msgspec.structs.replace(PLAIN, causation_id="cause-1", fingerprint="0123456789abcdef"),
        msgspec.structs.replace(PLAIN, fingerprint="0123456789abcdef"),
        msgspec.structs.replace(PLAIN, extra={"traceparent": "00-ab-cd-01", "tracestate": "a=1"}),
        # Values no command path makes, which the general encoder strips and cleans.
        msgspec.structs.replace(PLAIN, correlation_id=" padded "),
        msgspec.structs.replace(PLAIN, causation_id="line\r\nbreak"),
        msgspec.structs.replace(PLAIN, recorded_at="2026-01-01 00:00:00"),
    ],
    ids=["plain", "caused", "fingerprinted", "traced", "padded", "line-break", "blank"],
)
def test_the_header_block_is_the_encoded_headers(commit: Commit) -> None:
    """Written in one piece or through the general encoder: the same bytes."""
    assert commit.header_block(7) == encode_headers(commit.headers(7))


def test_the_encoding_cleans_values_as_nats_py_does() -> None:
    """Surrounding blanks are stripped and line breaks inside a value become spaces."""
    block = encode_headers({"A": " x ", "B": "y\r\nz"})
    assert block == b"NATS/1.0\r\nA: x\r\nB: y  z\r\n\r\n"
