"""Bearer tokens and their scopes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from runtime.errors import ConfigurationError, Forbidden, Unauthorized
from runtime.gateway.auth import Tokens


def test_without_tokens_every_request_is_allowed() -> None:
    """An empty token set asks for no authentication."""
    tokens = Tokens()
    tokens.authorize(tokens.authenticate(None), "order.create")


def test_a_scope_allows_its_commands_and_nothing_else() -> None:
    """`user.*` allows every user command; another aggregate's command is forbidden."""
    tokens = Tokens.of({"t": ["user.*", "orders.get_order_by_id"]})
    digest = tokens.authenticate("Bearer t")
    tokens.authorize(digest, "user.create")
    tokens.authorize(digest, "orders.get_order_by_id")
    with pytest.raises(Forbidden):
        tokens.authorize(digest, "orders.get_orders_for_user")


def test_missing_or_unknown_tokens_are_unauthorized() -> None:
    """No header, another scheme or an unknown token is refused before any scope check."""
    tokens = Tokens.of({"t": ["*"]})
    for header in (None, "", "Basic dDp0", "Bearer ", "Bearer other"):
        with pytest.raises(Unauthorized):
            tokens.authenticate(header)


def test_a_file_may_hold_the_digest_instead_of_the_token(tmp_path: Path) -> None:
    """A `sha256:<hex>` key authenticates the token whose digest it is."""
    path = tmp_path / "tokens.json"
    digest = hashlib.sha256(b"secret").hexdigest()
    path.write_text(json.dumps({f"sha256:{digest}": ["*"]}))
    tokens = Tokens.load(path)
    tokens.authorize(tokens.authenticate("Bearer secret"), "anything.at_all")


@pytest.mark.parametrize(
    "content", ['{"t": ["user"]}', '{"t": "user.*"}', '{"t": ["User.*"]}', "[]", "{", "{}"]
)
def test_a_bad_tokens_file_is_a_configuration_error(tmp_path: Path, content: str) -> None:
    """Malformed JSON, a scope that is not owner.name, or no tokens at all is refused at start."""
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError):
        Tokens.load(path)
