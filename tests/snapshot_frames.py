"""Taking a projection snapshot apart, for the tests that check or damage its frames."""

from __future__ import annotations

import zlib

import orjson

from runtime.read.snapshot_blob import FRAME_HEAD, MAGIC


def split_frames(blob: bytes) -> tuple[bytes, list[bytes]]:
    """The magic and header lines of a format-2 or format-3 blob, and its frames as stored
    (in format 3 each with its head), so that ``head + b"".join(frames)`` is the blob."""
    first = blob.index(b"\n", blob.index(b"\n") + 1) + 1
    head, rest, frames = blob[:first], blob[first:], []
    framed = orjson.loads(head.split(b"\n")[1])["format"] == 3
    while rest:
        if framed:
            end = FRAME_HEAD.size + FRAME_HEAD.unpack_from(rest)[0]
        else:
            inflater = zlib.decompressobj()
            inflater.decompress(rest)
            end = len(rest) - len(inflater.unused_data)
        frames.append(rest[:end])
        rest = rest[end:]
    return head, frames


def frame(payload: bytes) -> bytes:
    """A format-3 frame of ``payload`` (msgpack)."""
    compressed = zlib.compress(payload)
    return FRAME_HEAD.pack(len(compressed), len(payload)) + compressed


def as_format_2(blob: bytes) -> bytes:
    """A format-3 blob as format 2 wrote it: the same frames, without their heads."""
    head, frames = split_frames(blob)
    header = orjson.loads(head.split(b"\n")[1])
    header["format"] = 2
    body = b"".join(f[FRAME_HEAD.size :] for f in frames)
    return b"".join((MAGIC, b"\n", orjson.dumps(header), b"\n", body))
