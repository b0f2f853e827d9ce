"""The ``accounts`` section of the nats-server config: the application's account with one
user per role (their grants from :mod:`runtime.ops.permissions`), and the system account."""

from __future__ import annotations

from collections.abc import Sequence

from ..wire.partitions import command_mapping
from .natsconf import Block, Comment, Value, header, quote, render_block
from .permissions import ACCOUNT, SYSTEM_ACCOUNT, User, password_var


def user_block(user: User) -> dict[str, Value | Comment]:
    block: dict[str, Value | Comment] = {
        "_what": Comment(f"{user.role}: {user.description}"),
        "user": user.name,
        "password": password_var(user.name),
    }
    if user.grant is not None:
        block["permissions"] = user.grant.block()
    return block


def accounts_config(
    users: Sequence[User], *, source: Sequence[str] = (), partitions: int | None = None
) -> str:
    """The ``accounts`` section: the application's account with its users, and the system one.

    Passwords are ``$CQRS_<USER>_PASSWORD`` references: nats-server refuses to start while one
    is missing, and a value starting with ``$2a$`` is taken as a bcrypt hash.
    """
    app_users: list[Value] = [user_block(u) for u in users]
    account: dict[str, Value | Comment] = {"jetstream": True, "users": app_users}
    if partitions:
        account["_mappings"] = Comment(
            f"Commands go to one of {partitions} partitions by aggregate type and id; each\n"
            "partition is served by the one worker holding its lease (docs: how-to/scale-out.md)."
        )
        account["mappings"] = {quote(src): dst for src, dst in command_mapping(partitions).items()}
    accounts: Block = {
        ACCOUNT: account,
        SYSTEM_ACCOUNT: {"users": [{"user": "sys", "password": password_var("sys")}]},
    }
    top: dict[str, Value | Comment] = {
        "accounts": accounts,
        "system_account": SYSTEM_ACCOUNT,
    }
    return header(
        [
            "Accounts and least-privilege users for cqrs-runtime.",
            *source,
            "Passwords come from the environment: "
            + ", ".join(f"${password_var(u.name).name}" for u in users)
            + f", ${password_var('sys').name}.",
        ]
    ) + render_block(top)
