"""Account reads: the tenant a user acts for, and their role in it."""

from __future__ import annotations

from apps.accounts.models import Membership, Tenant, User
from apps.core.errors import ApplicationError, ErrorCode


def user_tenant_get(*, user: User) -> Tenant:
    """The tenant a signed-in user acts for on the web front door."""
    if user.default_tenant_id:
        return user.default_tenant
    membership = Membership.objects.filter(user=user).select_related("tenant").order_by("created_at").first()
    if membership is None:
        raise ApplicationError(ErrorCode.PERMISSION_DENIED, "Your account belongs to no organisation.")
    return membership.tenant


def user_role_get(*, user: User, tenant: Tenant) -> str | None:
    return Membership.objects.filter(user=user, tenant=tenant).values_list("role", flat=True).first()
