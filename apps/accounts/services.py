"""Account services: create tenants and users with roles; set up the demo tenant and its two users."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from apps.accounts.models import DEMO_TENANT_SLUG, Membership, Role, Tenant, User
from apps.core.errors import ApplicationError, ErrorCode


def tenant_get_or_create(*, slug: str, name: str) -> Tenant:
    tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": name})
    return tenant


@transaction.atomic
def user_create(*, tenant: Tenant, username: str, password: str, role: str = Role.CUSTOMER,
                email: str = "", validate: bool = True) -> User:
    """Create a user with a membership in `tenant`; password rules apply unless `validate=False`."""
    username = username.strip()
    if not username:
        raise ApplicationError(ErrorCode.VALIDATION, "A username is required.", field="username")
    if role not in Role.values:
        raise ApplicationError(ErrorCode.VALIDATION, f"Unknown role {role!r}.", field="role")
    if User.objects.filter(username__iexact=username).exists():
        raise ApplicationError(ErrorCode.CONFLICT, "That username is taken.", field="username")
    user = User(username=username, email=email, default_tenant=tenant)
    if validate:
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise ApplicationError(ErrorCode.VALIDATION, " ".join(exc.messages), field="password") from None
    user.set_password(password)
    user.save()
    Membership.objects.create(tenant=tenant, user=user, role=role)
    return user


def demo_tenant_get() -> Tenant:
    return tenant_get_or_create(slug=DEMO_TENANT_SLUG, name="Demo Organisation")


@dataclass(frozen=True)
class DemoCredentials:
    username: str
    password: str
    role: str
    created: bool


@transaction.atomic
def demo_setup(*, password: str | None = None) -> list[DemoCredentials]:
    """Ensure the demo tenant, a demo customer and a demo expert; (re)set their passwords.

    Re-running it is safe: existing users keep their data and get the password printed again.
    """
    tenant = demo_tenant_get()
    results = []
    for username, role in (("demo-customer", Role.CUSTOMER), ("demo-expert", Role.EXPERT)):
        secret = password or secrets.token_urlsafe(12)
        user = User.objects.filter(username=username).first()
        created = user is None
        if user is None:
            user = user_create(tenant=tenant, username=username, password=secret, role=role, validate=False)
        else:
            user.set_password(secret)
            user.save(update_fields=["password"])
            Membership.objects.update_or_create(tenant=tenant, user=user, defaults={"role": role})
        if role == Role.EXPERT and not user.is_staff:
            user.is_staff = True  # experts reach the console (Django admin underneath)
            user.save(update_fields=["is_staff"])
        results.append(DemoCredentials(username=username, password=secret, role=role, created=created))
    return results
