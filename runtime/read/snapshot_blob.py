"""The bytes of a read-model snapshot: written in format 3, read in formats 1, 2 and 3.

Every format is self-describing: a magic line, a JSON header line (``format``, ``codec``, the
snapshot's projection, sequence and schema version), then the model as msgpack (msgspec, typed by
the projection's model class), zlib-compressed. Read models repeat their field names on every
row, so even the fastest zlib level shrinks them ~10x.

- **Format 1** (read only, so that every stored snapshot stays restorable): the model as one
  msgpack value in one zlib stream. Nothing can be decoded before the whole body has arrived,
  and the whole inflated body (~260 bytes a row) is held next to the model being decoded.
- **Format 2** (read only): the model in *frames*, each an independent zlib stream of one
  msgpack array ``[part, value]``. The first frame is the model's skeleton (``part`` nil): the
  model with its big parts empty. The parts are the model itself when it is a plain dict or
  list, or else the fields typed as a plain dict or list of a dataclass or Struct that is
  encoded as a map and has no ``__post_init__`` (which would otherwise see the empty parts);
  other models are all skeleton. Then come the parts' entries, :data:`PIECE` to a frame
  (``part`` the field's name, ``""`` for the model itself), which the reader adds to the
  skeleton's empty dict or list in order. The header says how many frames there are, so a blob
  cut at a frame's end is as corrupt as one cut inside a frame.
- **Format 3**: the frames of format 2, each preceded by its compressed and its inflated size
  (:data:`FRAME_HEAD`, two little-endian unsigned 64-bit integers). Knowing both, the reader
  inflates a frame in one call into a buffer of the right size, which releases the GIL for the
  whole frame; a format-2 frame is inflated piece by piece as its end is unknown, and every
  piece and every growth of the output takes the GIL back, each time waiting for the decoder,
  which holds it. That wait, not the inflation, had kept the inflation from overlapping the
  decoding.

A snapshot is read as it downloads: the compressed chunks are inflated, frame by frame, in one
worker thread (zlib releases the GIL) and each frame is decoded, in a thread of its own, as soon
as it is complete. So the decoding, which is most of a restore, overlaps the download and the
inflation, and only a few inflated frames are held at a time.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import io
import itertools
import queue
import struct
import threading
import typing
import zlib
from collections.abc import Iterator
from typing import Any

import msgspec
import orjson

MAGIC = b"CQRS-PROJECTION-SNAPSHOT"
FORMAT = 3  # the layout written; the model's own schema is the projection's version
READABLE = (1, 2, 3)
CODEC = "msgpack+zlib"
# Entries of a part in one frame: ~0.5 MB inflated at ~260 bytes a row, a few milliseconds of
# decoding, for which the decoder holds the GIL that the download and the inflation wait on.
PIECE = 2048
IN_FLIGHT = 4  # inflated frames waiting for the decoder before the inflation waits
FRAME_HEAD = struct.Struct("<QQ")  # format 3: a frame's compressed size, then its inflated size
# Deflate inflates at most ~1,032-fold: a frame head claiming more is corrupt, and is refused
# before a buffer of that size is asked for.
MAX_INFLATION = 1100


class CorruptSnapshot(Exception):
    """Raised (internally) when a snapshot's bytes do not decode into its model."""


# -- the parts of a model ---------------------------------------------------------------------


def _container(hint: Any) -> type | None:
    """``dict`` or ``list`` when ``hint`` is a plain (unconstrained) one of them, else None."""
    origin = typing.get_origin(hint) or hint
    return origin if origin in (dict, list) else None


@functools.cache
def parts_of(model_type: Any) -> dict[str, Any]:
    """The parts of ``model_type`` whose entries go in frames of their own, by name, with the
    type each frame's value decodes as (see the module docstring); empty when there are none."""
    if _container(model_type) is not None:
        return {"": model_type}
    if not isinstance(model_type, type) or hasattr(model_type, "__post_init__"):
        return {}
    info = msgspec.inspect.type_info(model_type)
    if isinstance(info, msgspec.inspect.StructType):
        if info.array_like or info.tag_field is not None:
            return {}
    elif not isinstance(info, msgspec.inspect.DataclassType):
        return {}
    hints = typing.get_type_hints(model_type, include_extras=True)
    return {
        f.encode_name: hints[f.name]
        for f in info.fields
        if f.name == f.encode_name and _container(hints.get(f.name)) is not None
    }


def _pieces(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        items = iter(value.items())
        while piece := dict(itertools.islice(items, PIECE)):
            yield piece
    else:
        for start in range(0, len(value), PIECE):
            yield value[start : start + PIECE]


def encode_frames(model_type: Any, model: Any) -> list[bytes]:
    """The msgpack frames of ``model`` (blocking and CPU-bound; the model must not change)."""
    encode = msgspec.msgpack.Encoder().encode
    parts = parts_of(model_type)
    if "" in parts and type(model) is _container(model_type):
        return [encode((None, type(model)())), *(encode(("", p)) for p in _pieces(model))]
    split = {
        name: value
        for name in parts
        if type(value := getattr(model, name, None)) is _container(parts[name])
    }
    if not split:
        return [encode((None, model))]
    info = msgspec.inspect.type_info(type(model))
    assert isinstance(info, msgspec.inspect.StructType | msgspec.inspect.DataclassType)
    skeleton = {
        f.encode_name: type(split[f.name])() if f.name in split else getattr(model, f.name)
        for f in info.fields
    }
    frames = [encode((None, skeleton))]
    for name, value in split.items():
        frames.extend(encode((name, piece)) for piece in _pieces(value))
    return frames


def pack(frames: list[bytes], header: dict[str, Any]) -> bytes:
    """A format-3 blob of ``frames`` (blocking; the compression releases the GIL)."""
    head = orjson.dumps({"format": FORMAT, "codec": CODEC, "frames": len(frames), **header})
    out = [MAGIC, b"\n", head, b"\n"]
    for frame in frames:
        compressed = zlib.compress(frame, 1)
        out += (FRAME_HEAD.pack(len(compressed), len(frame)), compressed)
    return b"".join(out)


# -- reading ----------------------------------------------------------------------------------


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Decoding creates millions of objects, nearly all of them acyclic and all of them kept;
    the cycle collector would keep re-scanning them while they are being made (msgspec's advice
    for large messages), and once it is back on, its first young collections would scan them all
    again, twice (a second of a million-row restore). So it is paused while they are made, and
    then everything alive is moved out of its reach (``gc.freeze``): objects still go as soon as
    nothing refers to them, only cycles among what was alive at the restore are never reclaimed.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        gc.freeze()
    finally:
        if enabled:
            gc.enable()


def decode_model(model_type: Any, body: memoryview | bytes) -> Any:
    """Decode a format-1 body into the model (blocking and CPU-bound)."""
    try:
        return msgspec.msgpack.decode(body, type=model_type)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CorruptSnapshot(f"the model does not decode: {exc}") from None


class Assembler:
    """Decodes format-2 frames into the model, in order, as :meth:`run` receives them."""

    def __init__(self, model_type: Any) -> None:
        self.model_type = model_type
        self.parts = {name: msgspec.msgpack.Decoder(t) for name, t in parts_of(model_type).items()}
        self.frame = msgspec.msgpack.Decoder(tuple[str | None, msgspec.Raw])
        self.model: Any = None
        self.frames = 0
        self.error: CorruptSnapshot | None = None
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()  # None: the end
        self._slots = threading.Semaphore(IN_FLIGHT)

    def put(self, frame: bytes) -> None:
        """Hand over the next frame (from the inflating thread; waits while too many wait)."""
        self._slots.acquire()
        self._queue.put(frame)

    def close(self) -> None:
        """No more frames (never waits)."""
        self._queue.put(None)

    def run(self) -> None:
        """Decode frames until :meth:`close` (a worker thread). After an error the remaining
        frames are only taken off the queue, so the download never waits on a dead decoder."""
        while (frame := self._queue.get()) is not None:
            try:
                if self.error is None:
                    self._add(frame)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.error = CorruptSnapshot(f"frame {self.frames} does not decode: {exc}")
            except CorruptSnapshot as exc:
                self.error = exc
            finally:
                self._slots.release()

    def _add(self, frame: bytes) -> None:
        part, raw = self.frame.decode(frame)
        if part is None:
            if self.frames:
                raise CorruptSnapshot(f"frame {self.frames} is a second skeleton")
            self.model = msgspec.msgpack.decode(raw, type=self.model_type)
        else:
            decoder = self.parts.get(part)
            if decoder is None or not self.frames:
                raise CorruptSnapshot(f"frame {self.frames} is of no part: {part!r}")
            target = self.model if part == "" else getattr(self.model, part)
            piece = decoder.decode(raw)
            if isinstance(target, dict):
                target.update(piece)
            else:
                target.extend(piece)
        self.frames += 1

    def result(self, frames: Any) -> Any:
        if self.error is not None:
            raise self.error
        if self.frames != frames or not self.frames:
            raise CorruptSnapshot(f"the snapshot has {self.frames} of its {frames} frames")
        return self.model


class Sink:
    """Takes the blob's chunks in order (:meth:`write`, also a ``writeinto=`` target): checks
    the header, then inflates the body as chunks arrive, whole (format 1) or frame by frame into
    ``assembler`` (formats 2 and 3). The first error is kept and the rest of the download
    ignored, so that the download ends normally; :meth:`finish` raises it."""

    def __init__(self, assembler: Assembler) -> None:
        self.assembler = assembler
        self.head = bytearray()
        self.header: dict[str, Any] | None = None
        self.inflater = zlib.decompressobj()
        self.body = io.BytesIO()  # format 1
        self.frame: list[bytes] = []  # format 2: what the current frame has inflated to
        self.started = False  # format 2: the current frame has begun
        self.pending = bytearray()  # format 3: the compressed bytes not inflated yet
        self.error: CorruptSnapshot | None = None

    @property
    def started_writing(self) -> bool:
        return self.header is not None or bool(self.head)

    def write(self, chunk: bytes) -> int:
        if self.error is None and self.assembler.error is None:
            try:
                self._take(chunk)
            except CorruptSnapshot as exc:
                self.error = exc
            except zlib.error as exc:
                self.error = CorruptSnapshot(f"snapshot body does not inflate: {exc}")
        return len(chunk)

    def _take(self, chunk: bytes) -> None:
        if self.header is None:
            self.head += chunk
            parts = bytes(self.head).split(b"\n", 2)
            if len(parts) < 3:
                if len(self.head) > 64 * 1024:
                    raise CorruptSnapshot("no snapshot header in the first 64 KiB")
                return
            magic, header, chunk = parts
            if magic != MAGIC:
                raise CorruptSnapshot("not a projection snapshot (bad magic)")
            try:
                self.header = orjson.loads(header)
            except orjson.JSONDecodeError as exc:
                raise CorruptSnapshot(f"bad snapshot header: {exc}") from None
            if not isinstance(self.header, dict) or self.header.get("format") not in READABLE:
                raise CorruptSnapshot(f"a snapshot header of no known format: {self.header}")
            self.head = bytearray()
        if self.header["format"] == 1:
            self.body.write(self.inflater.decompress(chunk))
        elif self.header["format"] == 2:
            self._take_format_2(chunk)
        else:
            self._take_format_3(chunk)

    def _take_format_3(self, chunk: bytes) -> None:
        pending = self.pending
        pending += chunk
        while len(pending) >= FRAME_HEAD.size:
            size, inflated = FRAME_HEAD.unpack_from(pending)
            end = FRAME_HEAD.size + size
            if inflated > MAX_INFLATION * size + 64:
                raise CorruptSnapshot(f"a frame head claims {inflated} bytes from {size}")
            if len(pending) < end:
                return
            with memoryview(pending) as view, view[FRAME_HEAD.size : end] as compressed:
                frame = zlib.decompress(compressed, bufsize=max(inflated, 1))
            if len(frame) != inflated:
                raise CorruptSnapshot(f"a frame inflated to {len(frame)} bytes, not {inflated}")
            del pending[:end]  # (deleting a bytearray's head moves no bytes)
            self.assembler.put(frame)

    def _take_format_2(self, chunk: bytes) -> None:
        while chunk:
            self.started = True
            self.frame.append(self.inflater.decompress(chunk))
            if not self.inflater.eof:
                return
            chunk = self.inflater.unused_data
            self.assembler.put(b"".join(self.frame))
            self.frame, self.started, self.inflater = [], False, zlib.decompressobj()

    def finish(self) -> tuple[dict[str, Any], memoryview | None]:
        """The header, and the inflated body of a format-1 snapshot (None for format 2)."""
        if self.error is not None:
            raise self.error
        if self.header is None:
            raise CorruptSnapshot("the snapshot ends before its header")
        if self.header["format"] != 1:
            if self.started or self.pending:
                raise CorruptSnapshot("the snapshot's last frame is truncated")
            return self.header, None
        try:
            self.body.write(self.inflater.flush())
        except zlib.error as exc:
            raise CorruptSnapshot(f"snapshot body does not inflate: {exc}") from None
        if not self.inflater.eof:
            raise CorruptSnapshot("the snapshot body is truncated")
        return self.header, self.body.getbuffer()
