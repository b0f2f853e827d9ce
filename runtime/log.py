"""The runtime's loggers: quiet in a program that has not asked for logs.

structlog, left unconfigured, prints every line to stdout, so a library that logs through it
writes into its user's output (``Client.connect`` would print ``nats_connecting``). The runtime's
loggers therefore use structlog only once something has configured it (the ``cqrs`` processes
do, through :func:`runtime.ops.logs.configure_logging`, and so may the user's program); until
then they hand their lines to the standard library's ``logging`` under the same name, where a
``NullHandler`` on ``runtime`` keeps them silent unless the program configures ``logging``
(``logging.basicConfig()`` shows them). httpx and anyio behave the same way.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

logging.getLogger("runtime").addHandler(logging.NullHandler())

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
}


class Logger:
    """A structlog-style logger (``log.info("event", key=value)``, ``bind``) that logs through
    structlog when it is configured and through ``logging`` otherwise."""

    def __init__(self, name: str, context: dict[str, Any] | None = None) -> None:
        self.name = name
        self._context = context or {}

    def bind(self, **values: Any) -> Logger:
        return Logger(self.name, {**self._context, **values})

    def new(self, **values: Any) -> Logger:
        return Logger(self.name, values)

    def unbind(self, *keys: str) -> Logger:
        return Logger(self.name, {k: v for k, v in self._context.items() if k not in keys})

    def __getattr__(self, method: str) -> Any:
        level = _LEVELS.get(method)
        if level is None:
            raise AttributeError(method)

        def emit(event: str, *args: Any, **values: Any) -> None:
            fields = {**self._context, **values}
            if structlog.is_configured():
                logger = structlog.get_logger(self.name).bind(**self._context)
                getattr(logger, method)(event, *args, **values)
                return
            std = logging.getLogger(self.name)
            if std.isEnabledFor(level):
                text = " ".join([event % args if args else event, *_pairs(fields)])
                std.log(level, text, exc_info=method == "exception" or values.get("exc_info"))

        return emit


def _pairs(fields: dict[str, Any]) -> list[str]:
    return [f"{key}={value!r}" for key, value in fields.items() if key != "exc_info"]


def get_logger(name: str) -> Logger:
    """The logger of one runtime module (``get_logger("runtime.write.actor")``)."""
    return Logger(name)
