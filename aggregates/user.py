"""The ``user`` aggregate: people who place orders, with a validated email and a role."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Annotated

from msgspec import Meta

from runtime import Aggregate, NotBlank, Rejected

# Input rules live on the argument types: the runtime checks them before a handler runs and the
# OpenAPI document states them. Handlers only normalise (trim, lower-case) and apply business
# rules.
Name = Annotated[NotBlank, Meta(max_length=200, examples=["Ada Lovelace"])]
_PART = r"[^@\x00-\x20\x7f-\xa0]+"  # no @, no whitespace or control character
Email = Annotated[
    str,
    Meta(
        max_length=254,
        pattern=rf"^{_PART}@{_PART}\.[A-Za-z]{{2,}}$",
        description="an address",
        examples=["ada@example.com"],
    ),
]


class Role(enum.StrEnum):
    CUSTOMER = "customer"
    SUPPORT = "support"
    ADMIN = "admin"


# -- commands -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Create:
    name: Name
    email: Email
    role: Role = Role.CUSTOMER


@dataclass(frozen=True, slots=True)
class ChangeEmail:
    email: Email


@dataclass(frozen=True, slots=True)
class ChangeRole:
    role: Role


# -- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserCreated:
    name: str
    email: str
    role: Role


@dataclass(frozen=True, slots=True)
class EmailUpdated:
    email: str
    previous: str


@dataclass(frozen=True, slots=True)
class RoleChanged:
    role: Role
    previous: Role


# -- state ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserState:
    exists: bool = False
    name: str = ""
    email: str = ""
    role: Role = Role.CUSTOMER


user = Aggregate("user", UserState())


def _existing(state: UserState) -> UserState:
    if not state.exists:
        raise Rejected("the user does not exist", rule="user_must_exist")
    return state


@user.command("create")
def create(state: UserState, cmd: Create) -> UserCreated:
    if state.exists:
        raise Rejected("the user already exists", rule="create_once")
    return UserCreated(name=cmd.name.strip(), email=cmd.email.lower(), role=cmd.role)


@user.command("change_email")
def change_email(state: UserState, cmd: ChangeEmail) -> EmailUpdated | None:
    email = cmd.email.lower()
    if _existing(state).email == email:
        return None  # already so: accepted, nothing to record
    return EmailUpdated(email=email, previous=state.email)


@user.command("change_role")
def change_role(state: UserState, cmd: ChangeRole) -> RoleChanged | None:
    if _existing(state).role == cmd.role:
        return None
    return RoleChanged(role=cmd.role, previous=state.role)


@user.event("user.created.v1")
def created(state: UserState, event: UserCreated) -> UserState:
    return UserState(exists=True, name=event.name, email=event.email, role=event.role)


@user.event("user.email_updated.v1")
def email_updated(state: UserState, event: EmailUpdated) -> UserState:
    return replace(state, email=event.email)


@user.event("user.role_changed.v1")
def role_changed(state: UserState, event: RoleChanged) -> UserState:
    return replace(state, role=event.role)
