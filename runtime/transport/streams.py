"""Streams and buckets the runtime sets up on JetStream, and how concurrent set-up is settled.

Every process that needs a stream or bucket creates it when it is missing, so a fresh deployment
provisions itself. Several processes starting together race to do so; the losers get JetStream's
"already in use" error and simply use what the winner created (:func:`create_once`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import nats.js
import nats.js.errors
from nats.js import api
from nats.js.kv import KeyValue

from ..errors import ConfigurationError
from ..wire.naming import EVENT_PREFIX
from .nats_errors import jetstream_setup
from .startup import jetstream_call

T = TypeVar("T")

NAME_IN_USE = 10058  # JetStream: a stream (or bucket) of that name exists already


async def create_once(
    create: Callable[[], Awaitable[T]], existing: Callable[[], Awaitable[T]], what: str
) -> T:
    """Create ``what``; if another process created it first, return that one (``existing``).
    Any other refusal is a :class:`ConfigurationError` naming ``what``. During start-up both
    calls wait for JetStream (:mod:`runtime.transport.startup`)."""
    with jetstream_setup(what):
        try:
            return await jetstream_call(what, create)
        except nats.js.errors.APIError as exc:
            if exc.err_code != NAME_IN_USE:
                raise
        return await jetstream_call(what, existing)


async def bind_key_value(
    js: nats.js.JetStreamContext, config: api.KeyValueConfig, what: str
) -> KeyValue:
    """Bind the KV bucket ``config`` names, creating it (once, see :func:`create_once`) when it
    does not exist yet; any refusal is a :class:`ConfigurationError` naming ``what``."""
    bucket = config.bucket
    try:
        with jetstream_setup(what):
            try:
                return await jetstream_call(what, lambda: js.key_value(bucket))
            except nats.js.errors.BucketNotFoundError:
                return await create_once(
                    lambda: js.create_key_value(config), lambda: js.key_value(bucket), what
                )
    except nats.js.errors.InvalidBucketNameError:
        raise ConfigurationError(f"{bucket!r} is not a valid KV bucket name") from None


async def provision_stream(
    js: nats.js.JetStreamContext, config: api.StreamConfig, what: str
) -> api.StreamInfo:
    """The info of the stream ``config`` names, creating it (once, see :func:`create_once`) when
    it does not exist yet; any refusal is a :class:`ConfigurationError` naming ``what``. An
    existing stream is returned as it is: checking its settings is the caller's."""
    name = config.name
    assert name is not None
    with jetstream_setup(what):
        try:
            return await jetstream_call(what, lambda: js.stream_info(name))
        except nats.js.errors.NotFoundError:
            return await create_once(
                lambda: js.add_stream(config), lambda: js.stream_info(name), what
            )


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """What the event stream must look like."""

    name: str = "EVENTS"
    replicas: int = 1
    duplicate_window: float = 120.0  # seconds
    max_msg_size: int | None = None
    # Read histories through subject-scoped consumers instead of stream-wide batched direct
    # gets, so the NATS user needs no read grant beyond its aggregates (history_reader.py).
    # Without it, reads switch to them when the server first refuses the direct get.
    scoped_reads: bool = False


async def ensure_event_stream(js: nats.js.JetStreamContext, settings: StreamSettings) -> None:
    """Create the event stream, or check that the existing one has the required settings."""
    wanted = api.StreamConfig(
        name=settings.name,
        subjects=[f"{EVENT_PREFIX}.>"],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        num_replicas=settings.replicas,
        duplicate_window=settings.duplicate_window,
        allow_direct=True,
        deny_delete=True,
        deny_purge=True,
        max_msg_size=settings.max_msg_size,
    )
    info = await provision_stream(js, wanted, f"stream {settings.name!r}")
    cfg = info.config
    problems = []
    if f"{EVENT_PREFIX}.>" not in (cfg.subjects or []):
        problems.append(f"subjects {cfg.subjects} do not include '{EVENT_PREFIX}.>'")
    if cfg.storage != api.StorageType.FILE:
        problems.append(f"storage is {cfg.storage}, not file")
    if not cfg.allow_direct:
        problems.append("allow_direct is off")
    if not cfg.deny_delete:
        problems.append("deny_delete is off")
    if not cfg.deny_purge:
        problems.append("deny_purge is off")
    if cfg.retention != api.RetentionPolicy.LIMITS:
        problems.append(f"retention is {cfg.retention}, not limits")
    if cfg.max_msgs not in (None, -1) or cfg.max_age not in (None, 0, 0.0):
        problems.append("the stream has limits that would discard events")
    if problems:
        raise ConfigurationError(
            f"stream {settings.name!r} exists with other settings: " + "; ".join(problems),
            details={"stream": settings.name, "problems": problems},
        )
