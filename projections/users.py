"""The ``users`` read model: users by id, and an email index for look-ups by address.

Aggregates never query each other, so nothing stops two users from registering the same address;
the index keeps every holder of an address, and ``find_user_by_email`` answers with the one who
has held it longest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aggregates.user import EmailUpdated, RoleChanged, UserCreated, user
from runtime import AggregateId, EventMeta, NotFound, Projection


@dataclass(slots=True)
class UserView:
    user_id: str
    name: str
    email: str
    role: str
    created_at: str
    updated_at: str


@dataclass
class UsersModel:
    users: dict[str, UserView] = field(default_factory=dict)
    by_email: dict[str, list[str]] = field(default_factory=dict)  # email -> user ids


users = Projection("users", UsersModel, follows=[user])


def _row(model: UsersModel, meta: EventMeta) -> UserView:
    row = model.users.get(meta.aggregate_id)
    if row is None:
        raise LookupError(f"user {meta.aggregate_id} changed before it was created")
    return row


@users.on("user.created.v1")
def created(model: UsersModel, event: UserCreated, meta: EventMeta) -> None:
    if meta.aggregate_id in model.users:
        raise LookupError(f"user {meta.aggregate_id} was created twice")
    model.users[meta.aggregate_id] = UserView(
        user_id=meta.aggregate_id,
        name=event.name,
        email=event.email,
        role=event.role.value,
        created_at=meta.recorded_at,
        updated_at=meta.recorded_at,
    )
    model.by_email.setdefault(event.email, []).append(meta.aggregate_id)


@users.on("user.email_updated.v1")
def email_updated(model: UsersModel, event: EmailUpdated, meta: EventMeta) -> None:
    row = _row(model, meta)
    holders = model.by_email.get(row.email, [])
    if meta.aggregate_id in holders:
        holders.remove(meta.aggregate_id)
        if not holders:
            del model.by_email[row.email]
    row.email = event.email
    row.updated_at = meta.recorded_at
    model.by_email.setdefault(event.email, []).append(meta.aggregate_id)


@users.on("user.role_changed.v1")
def role_changed(model: UsersModel, event: RoleChanged, meta: EventMeta) -> None:
    row = _row(model, meta)
    row.role = event.role.value
    row.updated_at = meta.recorded_at


@dataclass(frozen=True, slots=True)
class GetUserById:
    user_id: AggregateId


@dataclass(frozen=True, slots=True)
class FindUserByEmail:
    email: str


@users.query("get_user_by_id")
def get_user_by_id(model: UsersModel, args: GetUserById) -> UserView:
    row = model.users.get(args.user_id)
    if row is None:
        raise NotFound(f"no user {args.user_id!r}", details={"user_id": args.user_id})
    return row


@users.query("find_user_by_email")
def find_user_by_email(model: UsersModel, args: FindUserByEmail) -> UserView:
    email = args.email.strip().lower()
    holders = model.by_email.get(email)
    if not holders:
        raise NotFound("no user with that email", details={"field": "email"})
    return model.users[holders[0]]
