"""Version 2 of the ``orders`` projection: the same handlers and queries, as a deploy of changed
projection code would bring them (a changed model or handler meaning bumps ``version``). The
benchmark of a version switch builds the same one."""

from __future__ import annotations

from runtime import Projection
from runtime.bench.switch import orders_v2 as _orders_v2

orders_v2: Projection[object] = _orders_v2()
