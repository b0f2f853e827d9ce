"""Version 2 of the ``orders`` projection: the same handlers and queries, as a deploy of changed
projection code would bring them (a changed model or handler meaning bumps ``version``). The
benchmark of a version switch builds the same one.

``orders_v2_slow`` is that version with handlers that take 2 ms of CPU per event, so that its
rebuild lasts long enough for a test to look at it on however fast a machine."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from runtime import Projection
from runtime.bench.switch import orders_v2 as _orders_v2

HANDLER_CPU = 0.002  # seconds of CPU each event costs the slow version

orders_v2: Projection[object] = _orders_v2()


def _slow(handler: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(handler)
    def slowed(*args: Any) -> Any:
        until = time.perf_counter() + HANDLER_CPU
        while time.perf_counter() < until:  # work, not a wait: the event loop stays busy
            pass
        return handler(*args)

    return slowed


orders_v2_slow: Projection[Any] = _orders_v2(_slow)
