"""Fixtures of the ops tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ..procs import NatsNode, single_node
from .accounts import APP, PLAN


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NatsNode]:
    """A nats-server running the generated single-node config with the generated accounts."""
    server = single_node(tmp_path / "nats", APP, PLAN)
    server.start()
    try:
        await server.wait_listening()
        yield server
    finally:
        server.kill()
