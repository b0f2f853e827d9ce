"""Taking a format-2 projection snapshot apart, for the tests that check or damage its frames."""

from __future__ import annotations

import zlib


def split_frames(blob: bytes) -> tuple[bytes, list[bytes]]:
    """The magic and header lines of a format-2 blob, and its compressed frames."""
    first = blob.index(b"\n", blob.index(b"\n") + 1) + 1
    head, rest, frames = blob[:first], blob[first:], []
    while rest:
        inflater = zlib.decompressobj()
        inflater.decompress(rest)
        frames.append(rest[: len(rest) - len(inflater.unused_data)])
        rest = inflater.unused_data
    return head, frames
