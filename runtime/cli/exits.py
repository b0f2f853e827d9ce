"""How a failed ``cqrs`` command ends: one human line on stderr and an exit code per error class.

Exit codes follow BSD ``sysexits.h`` so scripts and supervisors can tell a refused command from
bad input, an unavailable server or a temporary failure (worth retrying). Every
:class:`~runtime.errors.CqrsError` code maps to one of them; the errors reference
(``docs/reference/errors.md``) lists the table.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from ..errors import CqrsError, Internal, PermissionDenied
from ..wire import codec

OK = 0
REJECTED = 1  # the command was understood and refused by a business rule
USAGE = 64  # EX_USAGE: bad options or arguments, unknown names
DATA = 65  # EX_DATAERR: invalid input, undecodable stored data
NOT_FOUND = 66  # EX_NOINPUT: what was asked for does not exist
NO_SERVER = 68  # EX_NOHOST: no server configured and none running
UNAVAILABLE = 69  # EX_UNAVAILABLE: NATS unreachable or closed, nobody serves the subject
SOFTWARE = 70  # EX_SOFTWARE: an internal error
TEMPORARY = 75  # EX_TEMPFAIL: timeout, busy, conflict, stale, in use: retry later
NO_PERMISSION = 77  # EX_NOPERM: NATS refused the user a subject; a token missing or short of scope
CONFIG = 78  # EX_CONFIG: the set-up is inconsistent
INTERRUPTED = 130  # Ctrl-C

BY_CODE: dict[str, int] = {
    "rejected": REJECTED,
    "unknown_command": USAGE,
    "unknown_query": USAGE,
    "invalid": DATA,
    "schema": DATA,
    "malformed": DATA,
    "too_large": DATA,
    "unsupported_media_type": DATA,
    "not_found": NOT_FOUND,
    "no_server": NO_SERVER,
    "unreachable": UNAVAILABLE,
    "connection_closed": UNAVAILABLE,
    "no_responders": UNAVAILABLE,
    "unavailable": UNAVAILABLE,
    "jetstream": UNAVAILABLE,
    "server": UNAVAILABLE,
    "internal": SOFTWARE,
    "timeout": TEMPORARY,
    "busy": TEMPORARY,
    "conflict": TEMPORARY,
    "stale": TEMPORARY,
    "store_in_use": TEMPORARY,
    "replica_in_use": TEMPORARY,
    "configuration": CONFIG,
    "unauthorized": NO_PERMISSION,
    "forbidden": NO_PERMISSION,
}


def exit_code(error: CqrsError) -> int:
    """The exit code of a command that failed with ``error``."""
    if isinstance(error, PermissionDenied):  # travels as ``internal``, but says what to fix
        return NO_PERMISSION
    return BY_CODE.get(error.code, SOFTWARE)


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside (nested) exception groups, or ``exc`` itself."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


def as_cqrs_error(exc: BaseException) -> CqrsError:
    """The error to report for ``exc``: its first :class:`CqrsError`, else ``internal``."""
    found = list(leaves(exc))
    for leaf in found:
        if isinstance(leaf, CqrsError):
            return leaf
    first = found[0] if found else exc
    return Internal(f"{type(first).__name__}: {first}".strip().rstrip(":")[:500])


def report(error: CqrsError, *, as_json: bool = False, hint: str | None = None) -> int:
    """Print ``error`` as one line on stderr (and as JSON on stdout with ``as_json``); return its
    exit code."""
    line = f"error ({error.code}): {error.message}"
    if rule := error.details.get("rule"):
        line += f" (rule {rule})"
    if hint:
        line += f"; {hint}"
    print(" ".join(line.split()), file=sys.stderr)
    if as_json:
        body: dict[str, Any] = error.to_wire()
        if hint:
            body["error"]["hint"] = hint
        print(codec.dumps(body).decode())
    return exit_code(error)
