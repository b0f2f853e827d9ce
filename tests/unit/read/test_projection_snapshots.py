"""The snapshot blob of a read model: round trip in format 3, formats 1 and 2 still read,
chunked reading, the parts of a model, and corruption (no NATS)."""

from __future__ import annotations

import gc
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
import pytest

import runtime.read.snapshot_blob as blob_format
from projections.orders import LineView, OrdersModel, OrderView, orders
from runtime.read.projector import model_digest
from runtime.read.snapshot_blob import (
    FRAME_HEAD,
    MAGIC,
    Assembler,
    CorruptSnapshot,
    Sink,
    decode_model,
    encode_frames,
    gc_paused,
    parts_of,
)
from runtime.read.snapshots import ProjectionSnapshot, encode_snapshot
from tests.snapshot_frames import as_format_2, frame, split_frames

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


@pytest.fixture(autouse=True)
def small_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames of a few entries, so that small models have many."""
    monkeypatch.setattr(blob_format, "PIECE", 16)


def read(blob: bytes, chunk: int, model_type: Any = OrdersModel) -> tuple[dict[str, Any], Any]:
    """Read a blob as the store does: chunk by chunk, the frames decoded in a thread."""
    assembler = Assembler(model_type)
    sink = Sink(assembler)
    decoder = threading.Thread(target=assembler.run)
    decoder.start()
    try:
        for start in range(0, len(blob), chunk):
            sink.write(blob[start : start + chunk])
    finally:
        assembler.close()
        decoder.join()
    header, body = sink.finish()
    if body is not None:
        return header, decode_model(model_type, body)
    return header, assembler.result(header.get("frames"))


def format_1(model: Any, info: ProjectionSnapshot = INFO) -> bytes:
    """A blob as format 1 was written: one zlib stream of the whole model."""
    header = orjson.dumps({"format": 1, "codec": "msgpack+zlib", **info.to_dict()})
    body = zlib.compress(msgspec.msgpack.encode(model), 1)
    return b"".join((MAGIC, b"\n", header, b"\n", body))


@pytest.mark.parametrize("chunk", [7, 4096, 1 << 20])
def test_a_snapshot_round_trips_in_any_chunking(chunk: int) -> None:
    """The blob (format 3) reads back the same whatever chunk sizes the object store delivers."""
    original = model()
    header, restored = read(encode_snapshot(orders, original, INFO), chunk)
    assert header["format"] == 3 and header["frames"] > 20  # 300 rows, 7 users, 16 a frame
    assert header["seq"] == 1234 and header["schema"] == 1 and header["projection"] == "orders"
    assert restored == original
    assert list(restored.orders) == list(original.orders)  # in the same order


@pytest.mark.parametrize("chunk", [7, 4096, 1 << 20])
def test_a_format_1_snapshot_still_restores(chunk: int) -> None:
    """Snapshots stored before format 2 stay readable."""
    original = model()
    header, restored = read(format_1(original), chunk)
    assert header["format"] == 1
    assert restored == original


@pytest.mark.parametrize("chunk", [7, 4096, 1 << 20])
def test_a_format_2_snapshot_still_restores(chunk: int) -> None:
    """Snapshots stored in format 2 (frames without their sizes) stay readable."""
    original = model()
    header, restored = read(as_format_2(encode_snapshot(orders, original, INFO)), chunk)
    assert header["format"] == 2
    assert restored == original
    assert list(restored.orders) == list(original.orders)


def test_each_frame_states_its_compressed_and_inflated_size() -> None:
    """Format 3 frames carry the sizes the reader inflates them with, in one call each."""
    blob = encode_snapshot(orders, model(), INFO)
    frames = split_frames(blob)[1]
    assert len(frames) == len(encode_frames(OrdersModel, model()))
    for stored in frames:
        size, inflated = FRAME_HEAD.unpack_from(stored)
        assert len(stored) == FRAME_HEAD.size + size
        assert len(zlib.decompress(stored[FRAME_HEAD.size :])) == inflated


@dataclass
class Plain:
    rows: dict[str, LineView] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)
    name: str = "plain"
    maybe: dict[str, int] | None = None


@dataclass
class Checked:
    rows: dict[str, int] = field(default_factory=dict)
    count: int = 0

    def __post_init__(self) -> None:
        self.count = len(self.rows)


class Renamed(msgspec.Struct, rename="camel"):
    row_by_id: dict[str, int] = {}
    tail: list[str] = []


class Positional(msgspec.Struct, array_like=True):
    rows: dict[str, int] = {}


def test_the_parts_of_a_model_are_its_plain_dict_and_list_fields() -> None:
    """Only fields whose entries can be added to an empty container are framed apart."""
    assert set(parts_of(OrdersModel)) == {"orders", "by_user"}
    assert set(parts_of(Plain)) == {"rows", "ids"}
    assert set(parts_of(dict[str, int])) == {""}
    assert parts_of(Checked) == {}  # __post_init__ would see the empty skeleton
    assert set(parts_of(Renamed)) == {"tail"}  # a renamed field stays in the skeleton
    assert parts_of(Positional) == {}


@pytest.mark.parametrize(
    ("model_type", "value"),
    [
        (Plain, Plain({f"k{i}": LineView(f"s{i}", i, "1.00") for i in range(50)}, [*range(70)])),
        (Plain, Plain(maybe={"a": 1})),
        (Checked, Checked({f"k{i}": i for i in range(40)})),
        (Renamed, Renamed({f"k{i}": i for i in range(40)}, [f"t{i}" for i in range(40)])),
        (Positional, Positional({f"k{i}": i for i in range(40)})),
        (dict[str, int], {f"k{i}": i for i in range(100)}),
        (list[str], [f"s{i}" for i in range(100)]),
    ],
)
def test_models_of_every_shape_round_trip(model_type: Any, value: Any) -> None:
    """Dataclasses, Structs, dicts and lists read back equal, framed or not."""
    blob = blob_format.pack(encode_frames(model_type, value), INFO.to_dict())
    assert read(blob, 4096, model_type)[1] == value


def test_equal_models_have_equal_digests() -> None:
    """Two models built the same way have the same digest; a change changes it."""
    a, b = model(), model()
    assert model_digest(a) == model_digest(b)
    b.orders["ord-1"].status = "shipped"
    assert model_digest(a) != model_digest(b)


def test_bytes_that_are_no_snapshot_are_corrupt() -> None:
    """A blob without the magic line is corrupt."""
    with pytest.raises(CorruptSnapshot, match="magic"):
        read(b"hello\n{}\nxxxx", 4096)


def test_a_header_of_an_unknown_format_is_corrupt() -> None:
    """A blob of a later format is not guessed at."""
    with pytest.raises(CorruptSnapshot, match="format"):
        read(MAGIC + b'\n{"format": 4}\n' + zlib.compress(b"x"), 4096)


@pytest.mark.parametrize(
    "make",
    [
        format_1,
        lambda m: as_format_2(encode_snapshot(orders, m, INFO)),
        lambda m: encode_snapshot(orders, m, INFO),
    ],
)
def test_a_snapshot_truncated_inside_its_body_is_corrupt(make: Any) -> None:
    """A blob cut short is corrupt, not a smaller model."""
    blob = make(model())
    with pytest.raises(CorruptSnapshot, match="truncated"):
        read(blob[: len(blob) - 20], 4096)


@pytest.mark.parametrize("convert", [as_format_2, lambda blob: blob])
def test_a_snapshot_cut_between_frames_is_corrupt(convert: Any) -> None:
    """A blob that ends where a frame ends still misses the frames the header counts."""
    head, frames = split_frames(convert(encode_snapshot(orders, model(), INFO)))
    with pytest.raises(CorruptSnapshot, match="frames"):
        read(head + b"".join(frames[:-3]), 4096)


def test_a_garbled_body_is_corrupt() -> None:
    """A body that is not deflate data is corrupt, in any format."""
    latest = encode_snapshot(orders, model(), INFO)
    for blob in (format_1(model()), as_format_2(latest), latest):
        head = blob[: blob.index(b"\n", blob.index(b"\n") + 1) + 1]
        with pytest.raises(CorruptSnapshot):
            read(head + b"\x00garbage" * 100, 4096)


@pytest.mark.parametrize(
    "lie",
    [
        pytest.param(lambda size, inflated: (size, inflated + 1), id="inflated size too large"),
        pytest.param(lambda size, inflated: (size, inflated - 1), id="inflated size too small"),
        pytest.param(lambda size, inflated: (size, 2000 * size), id="impossible inflation"),
        pytest.param(lambda size, inflated: (size + 1, inflated), id="frame too long"),
        pytest.param(lambda size, inflated: (size - 5, inflated), id="frame too short"),
    ],
)
def test_a_frame_head_that_lies_is_corrupt(lie: Any) -> None:
    """A format-3 frame whose head misstates its sizes is corrupt, never a different model,
    and an impossible inflated size is refused before a buffer of it is asked for."""
    head, frames = split_frames(encode_snapshot(orders, model(), INFO))
    size, inflated = FRAME_HEAD.unpack_from(frames[3])
    frames[3] = FRAME_HEAD.pack(*lie(size, inflated)) + frames[3][FRAME_HEAD.size :]
    with pytest.raises(CorruptSnapshot):
        read(head + b"".join(frames), 4096)


def test_frames_out_of_place_are_corrupt() -> None:
    """Frames in the wrong order, of no part, or a second skeleton: all corrupt."""
    head, frames = split_frames(encode_snapshot(orders, model(), INFO))
    stranger = frame(msgspec.msgpack.encode(("nope", {"a": 1})))
    for bad in (
        [frames[1], frames[0], *frames[2:]],  # entries before the skeleton
        [*frames[:-1], stranger],
        [frames[0], *frames[:-1]],
    ):
        with pytest.raises(CorruptSnapshot, match="frame"):
            read(head + b"".join(bad), 4096)


def test_a_body_of_another_shape_is_corrupt() -> None:
    """A model that does not decode into the projection's model type is corrupt."""
    with pytest.raises(CorruptSnapshot, match="decode"):
        decode_model(OrdersModel, memoryview(msgspec.msgpack.encode({"orders": [1, 2, 3]})))
    head, frames = split_frames(encode_snapshot(orders, model(), INFO))
    wrong = frame(msgspec.msgpack.encode(("orders", {"ord-x": [1, 2, 3]})))
    with pytest.raises(CorruptSnapshot, match="decode"):
        read(head + b"".join([*frames[:-1], wrong]), 4096)


def test_a_restored_model_is_left_out_of_the_collectors_scans() -> None:
    """The objects of a decoded model are not left in the young generation, where the cycle
    collector's next collections would scan every one of them (they are frozen instead)."""
    blob = encode_snapshot(orders, model(3_000), INFO)
    gc.collect()
    frozen = gc.get_freeze_count()
    try:
        with gc_paused():
            restored = read(blob, 1 << 20)[1]
        assert gc.get_count()[0] < 1_000  # not the ~6,000 rows and lists just made
        assert gc.get_freeze_count() - frozen >= 2 * len(restored.orders)
    finally:
        gc.unfreeze()
