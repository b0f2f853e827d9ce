"""Freezing a started process's heap."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from runtime.ops.heap import settle_heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_live_objects_are_frozen_and_garbage_is_collected_first(unfrozen: None) -> None:
    """What is alive moves out of the collector's way; a garbage cycle is freed, not frozen."""
    kept = Node()
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    settle_heap()
    assert gone() is None
    assert gc.get_freeze_count() > 0
    assert not any(o is kept for o in gc.get_objects())  # frozen objects are not listed


def test_young_collections_wait_for_more_than_the_work_in_flight(unfrozen: None) -> None:
    """The young generation's threshold rises to 10,000 and the older ones stay as they were."""
    gc.set_threshold(700, 10, 10)
    settle_heap()
    assert gc.get_threshold() == (10_000, 10, 10)
