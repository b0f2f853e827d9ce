"""The ``user`` aggregate: people who place orders, with a validated email and a role."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace

from runtime import Aggregate, InvalidInput, Rejected

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")


class Role(enum.StrEnum):
    CUSTOMER = "customer"
    SUPPORT = "support"
    ADMIN = "admin"


# -- commands -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Create:
    name: str
    email: str
    role: Role = Role.CUSTOMER


@dataclass(frozen=True, slots=True)
class ChangeEmail:
    email: str


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


def _valid_email(email: str) -> str:
    normalized = email.strip().lower()
    if len(normalized) > 254 or EMAIL.fullmatch(normalized) is None:
        raise InvalidInput("email is not a valid address", details={"field": "email"})
    return normalized


def _existing(state: UserState) -> UserState:
    if not state.exists:
        raise Rejected("the user does not exist", rule="user_must_exist")
    return state


@user.command("create")
def create(state: UserState, cmd: Create) -> UserCreated:
    if state.exists:
        raise Rejected("the user already exists", rule="create_once")
    name = cmd.name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("name must be 1 to 200 characters", details={"field": "name"})
    return UserCreated(name=name, email=_valid_email(cmd.email), role=cmd.role)


@user.command("change_email")
def change_email(state: UserState, cmd: ChangeEmail) -> EmailUpdated | None:
    email = _valid_email(cmd.email)
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
