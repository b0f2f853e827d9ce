"""Given/when/then specs of every rule of the ``user`` aggregate."""

from __future__ import annotations

from aggregates.user import EmailUpdated, Role, RoleChanged, UserCreated, user
from runtime.testing import AggregateSpec

ADA = UserCreated(name="Ada", email="ada@example.com", role=Role.CUSTOMER)


def spec() -> AggregateSpec:  # type: ignore[type-arg]
    return AggregateSpec(user, "u-1")


def test_create_records_a_normalised_user() -> None:
    """Creating a user records its trimmed name, lower-cased email and role."""
    spec().when("create", {"name": " Ada ", "email": "Ada@Example.com", "role": "admin"}).then(
        UserCreated(name="Ada", email="ada@example.com", role=Role.ADMIN)
    ).then_state(exists=True, role=Role.ADMIN)


def test_role_defaults_to_customer() -> None:
    """A user created without a role is a customer."""
    spec().when("create", {"name": "Ada", "email": "ada@example.com"}).then(ADA)


def test_a_user_is_created_once() -> None:
    """A second create is rejected by the create-once rule."""
    spec().given(ADA).when("create", {"name": "B", "email": "b@example.com"}).then_rejected(
        rule="create_once"
    )


def test_invalid_email_is_invalid_and_names_the_field() -> None:
    """An address without a domain is invalid input naming `email`."""
    spec().when("create", {"name": "Ada", "email": "ada@"}).then_invalid("email")


def test_unknown_role_is_invalid() -> None:
    """A role outside customer/support/admin is invalid input naming `role`."""
    spec().when("create", {"name": "Ada", "email": "a@example.com", "role": "root"}).then_invalid(
        "role"
    )


def test_empty_name_is_invalid() -> None:
    """A blank name is invalid input naming `name`."""
    spec().when("create", {"name": "  ", "email": "a@example.com"}).then_invalid("name")


def test_missing_field_is_invalid() -> None:
    """A create without an email names the missing field."""
    spec().when("create", {"name": "Ada"}).then_invalid("email")


def test_change_email() -> None:
    """Changing the email records the new and the previous address."""
    spec().given(ADA).when("change_email", {"email": "ada@lovelace.dev"}).then(
        EmailUpdated(email="ada@lovelace.dev", previous="ada@example.com")
    ).then_state(email="ada@lovelace.dev")


def test_change_email_to_the_same_address_changes_nothing() -> None:
    """Setting the current email again is accepted and decides no event."""
    spec().given(ADA).when("change_email", {"email": "ADA@example.com"}).then_nothing()


def test_change_email_of_a_missing_user_is_rejected() -> None:
    """No change to a user that does not exist."""
    spec().when("change_email", {"email": "a@example.com"}).then_rejected(rule="user_must_exist")


def test_change_email_validates_the_address() -> None:
    """A malformed new email is invalid input."""
    spec().given(ADA).when("change_email", {"email": "not-an-email"}).then_invalid("email")


def test_change_role() -> None:
    """Changing the role records the new and previous role."""
    spec().given(ADA).when("change_role", {"role": "support"}).then(
        RoleChanged(role=Role.SUPPORT, previous=Role.CUSTOMER)
    ).then_state(role=Role.SUPPORT)


def test_change_role_to_the_same_role_changes_nothing() -> None:
    """Setting the current role again decides no event."""
    spec().given(ADA).when("change_role", {"role": "customer"}).then_nothing()


def test_change_role_of_a_missing_user_is_rejected() -> None:
    """No role change for a user that does not exist."""
    spec().when("change_role", {"role": "admin"}).then_rejected(rule="user_must_exist")


def test_unknown_command() -> None:
    """A command the aggregate does not define is reported as unknown_command."""
    spec().when("delete", {}).then_rejected(code="unknown_command")


def test_unknown_field_is_invalid() -> None:
    """A misspelt argument is invalid input naming it, not silently ignored."""
    spec().given(ADA).when("change_role", {"role": "admin", "rol": "x"}).then_invalid("rol")
