"""Bearer tokens, each scoped to the commands and queries it may call.

The tokens file is a JSON object from token to scopes::

    {"s3cr3t-for-the-shop": ["order.*", "orders.*", "users.get_user_by_id"],
     "sha256:9f86d081884c7d65...": ["*"]}

A scope is ``<aggregate>.<command>`` or ``<projection>.<query>``, either part may be ``*``, and
``*`` alone allows everything. A key ``sha256:<hex>`` is the SHA-256 of a token, so the file
need not hold the secret itself. Tokens are compared by their digest, never as plain strings.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from ..errors import ConfigurationError, Forbidden, Unauthorized

SCOPE = re.compile(r"\*|(?:\*|[a-z][a-z0-9_]{0,63})\.(?:\*|[a-z][a-z0-9_]{0,63})")
HASHED = re.compile(r"sha256:([0-9a-f]{64})")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Tokens:
    """Which token digests may call which commands and queries; empty: no authentication."""

    scopes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    _allowed: dict[tuple[str, str], bool] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, tokens: Mapping[str, Iterable[str]]) -> Tokens:
        """Tokens from a mapping of token (or ``sha256:<hex>``) to scopes; checks every scope."""
        scopes: dict[str, tuple[str, ...]] = {}
        for token, patterns in tokens.items():
            if not isinstance(token, str) or not token:
                raise ConfigurationError("a token must be a non-empty string")
            if isinstance(patterns, str):
                raise ConfigurationError("a token's scopes must be a list of strings")
            checked = tuple(patterns)
            bad = [p for p in checked if not isinstance(p, str) or not SCOPE.fullmatch(p)]
            if bad:
                raise ConfigurationError(
                    f"bad scope {bad[0]!r}: use <aggregate>.<command>, <projection>.<query>, "
                    "either part may be '*', or '*' alone"
                )
            hashed = HASHED.fullmatch(token)
            scopes[hashed[1] if hashed else _digest(token)] = checked
        return cls(scopes)

    @classmethod
    def load(cls, path: Path) -> Tokens:
        """Read a tokens file (see the module docstring)."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read the tokens file {path}: {exc}") from None
        if not isinstance(data, dict) or not data:
            raise ConfigurationError(f"{path}: expected a JSON object of token -> [scopes]")
        return cls.of(data)

    @property
    def required(self) -> bool:
        return bool(self.scopes)

    def authenticate(self, authorization: str | None) -> str | None:
        """The digest of the request's valid bearer token (None when no token is required);
        raise :class:`Unauthorized` when a token is required and missing or unknown."""
        if not self.scopes:
            return None
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("this gateway requires a bearer token (Authorization: Bearer ...)")
        digest = _digest(token.strip())
        if digest not in self.scopes:
            raise Unauthorized("the bearer token is not valid")
        return digest

    def authorize(self, digest: str | None, scope: str) -> None:
        """Allow ``scope`` (``owner.name`` of a known command or query) for the token, or
        raise :class:`Forbidden`."""
        if digest is None:
            return
        key = (digest, scope)
        allowed = self._allowed.get(key)
        if allowed is None:
            allowed = any(p == "*" or fnmatchcase(scope, p) for p in self.scopes[digest])
            self._allowed[key] = allowed  # bounded: tokens x the app's commands and queries
        if not allowed:
            raise Forbidden(f"the token may not call {scope}", details={"scope": scope})
