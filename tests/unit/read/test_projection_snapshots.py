"""The snapshot blob of a read model: round trip, chunked inflation, and corruption (no NATS)."""

from __future__ import annotations

import pytest

from projections.orders import LineView, OrdersModel, OrderView, orders
from runtime.read.projector import model_digest
from runtime.read.snapshots import (
    CorruptSnapshot,
    ProjectionSnapshot,
    _Inflater,
    decode_model,
    encode_snapshot,
)

INFO = ProjectionSnapshot(
    projection="orders",
    replica="r1",
    seq=1234,
    schema=1,
    events=1000,
    taken_at="2026-11-26T12:00:00+00:00",
)


def model(rows: int = 300) -> OrdersModel:
    m = OrdersModel()
    for i in range(rows):
        row = OrderView(
            order_id=f"ord-{i}",
            user_id=f"u-{i % 7}",
            status="paid",
            total="39.80",
            currency="EUR",
            lines=[LineView("book", 2, "19.90")],
            created_at="2026-11-26T12:00:00+00:00",
            updated_at="2026-11-26T12:00:00+00:00",
            cancel_reason=None if i % 2 else "late",
        )
        m.orders[row.order_id] = row
        m.by_user.setdefault(row.user_id, []).append(row.order_id)
    return m


def inflate(blob: bytes, chunk: int) -> tuple[dict[str, object], memoryview]:
    sink = _Inflater()
    for start in range(0, len(blob), chunk):
        sink.write(blob[start : start + chunk])
    return sink.finish()


@pytest.mark.parametrize("chunk", [7, 4096, 1 << 20])
def test_a_snapshot_round_trips_in_any_chunking(chunk: int) -> None:
    """The blob inflates the same whatever chunk sizes the object store delivers."""
    original = model()
    header, body = inflate(encode_snapshot(orders, original, INFO), chunk)
    assert header["seq"] == 1234 and header["schema"] == 1 and header["projection"] == "orders"
    assert decode_model(orders, body) == original


def test_equal_models_have_equal_digests() -> None:
    """Two models built the same way have the same digest; a change changes it."""
    a, b = model(), model()
    assert model_digest(a) == model_digest(b)
    b.orders["ord-1"].status = "shipped"
    assert model_digest(a) != model_digest(b)


def test_bytes_that_are_no_snapshot_are_corrupt() -> None:
    """A blob without the magic line is corrupt."""
    with pytest.raises(CorruptSnapshot, match="magic"):
        inflate(b"hello\n{}\nxxxx", 4096)


def test_a_truncated_snapshot_is_corrupt() -> None:
    """A blob cut short is corrupt, not a smaller model."""
    blob = encode_snapshot(orders, model(), INFO)
    with pytest.raises(CorruptSnapshot, match="truncated"):
        inflate(blob[: len(blob) - 20], 4096)


def test_a_garbled_body_is_corrupt() -> None:
    """A body that is not deflate data is corrupt."""
    blob = encode_snapshot(orders, model(), INFO)
    head_end = blob.index(b"\n", blob.index(b"\n") + 1) + 1
    with pytest.raises(CorruptSnapshot):
        inflate(blob[:head_end] + b"\x00garbage" * 100, 4096)


def test_a_body_of_another_shape_is_corrupt() -> None:
    """A model that does not decode into the projection's model type is corrupt."""
    import msgspec

    with pytest.raises(CorruptSnapshot, match="decode"):
        decode_model(orders, memoryview(msgspec.msgpack.encode({"orders": [1, 2, 3]})))


def test_a_restored_model_is_left_out_of_the_collectors_scans() -> None:
    """The objects of a decoded model are not left in the young generation, where the cycle
    collector's next collections would scan every one of them (they are frozen instead)."""
    import gc

    body = inflate(encode_snapshot(orders, model(3_000), INFO), 1 << 20)[1]
    gc.collect()
    frozen = gc.get_freeze_count()
    try:
        restored = decode_model(orders, body)
        assert gc.get_count()[0] < 1_000  # not the ~6,000 rows and lists just made
        assert gc.get_freeze_count() - frozen >= 2 * len(restored.orders)
    finally:
        gc.unfreeze()
