"""Console roles and the one permission check every console view and action goes through.

A user holds one role per tenant (`accounts.Membership.role`). The console knows five roles:
customer, expert, approver, auditor, admin. Each staff role is a Django Group named `console:<role>`
carrying `console.*` permissions (created by migration 0002); `compliance`, the accounts app's older
name for a compliance officer, acts as both approver and auditor. A role is looked up per tenant, so
an expert of one bank has no rights in another. Superuser status grants nothing here on purpose: the
console is a tenant's tool, and a platform operator who needs it gets a membership like anyone else.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.models import Group
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from apps.accounts.selectors import user_role_get, user_tenant_get
from apps.core.errors import ApplicationError, ErrorCode

CUSTOMER, EXPERT, APPROVER, AUDITOR, ADMIN = "customer", "expert", "approver", "auditor", "admin"
ROLES = (CUSTOMER, EXPERT, APPROVER, AUDITOR, ADMIN)

# codename -> description; the Meta.permissions of `ConsoleAccess` repeat this list.
PERMISSIONS: dict[str, str] = {
    "view_console": "Open the console",
    "edit_pack": "Edit prompt pack drafts",
    "run_eval": "Run a pack's evaluation set",
    "approve_pack": "Approve a pack version (never one's own)",
    "publish_pack": "Publish or roll back a pack version",
    "review_queue": "Work the review queue and answer customers as a human",
    "view_audit": "Search and open audit records",
    "view_audit_content": "See the personal content behind an audit record",
    "export_audit": "Verify and export the audit chain",
    "view_dashboard": "See dashboards",
    "use_arena": "Use the R1 vs Zero arena",
}

# role -> permissions; the migration turns this table into Groups, the matrix test asserts it.
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    CUSTOMER: frozenset(),
    EXPERT: frozenset({"view_console", "edit_pack", "run_eval", "review_queue", "view_dashboard",
                       "use_arena"}),
    APPROVER: frozenset({"view_console", "run_eval", "approve_pack", "publish_pack", "view_dashboard",
                         "use_arena"}),
    AUDITOR: frozenset({"view_console", "view_audit", "view_audit_content", "export_audit",
                        "view_dashboard"}),
    ADMIN: frozenset(PERMISSIONS),
}
# Membership roles the accounts app already had, mapped onto console roles.
ROLE_ALIASES: dict[str, tuple[str, ...]] = {"compliance": (APPROVER, AUDITOR)}


def group_name(role: str) -> str:
    return f"console:{role}"


def console_roles(user: Any, tenant: Any) -> tuple[str, ...]:
    """The console roles `user` holds in `tenant` (empty for a stranger or a signed-out user)."""
    if not getattr(user, "is_authenticated", False) or tenant is None:
        return ()
    role = user_role_get(user=user, tenant=tenant)
    if role is None:
        return ()
    return ROLE_ALIASES.get(role, (role,)) if role in ROLES or role in ROLE_ALIASES else ()


def role_permissions(roles: tuple[str, ...]) -> frozenset[str]:
    """Permissions of the roles' groups, read from the database so that an admin can tune a group."""
    names = [group_name(role) for role in roles if role != CUSTOMER]
    if not names:
        return frozenset()
    codenames = Group.objects.filter(name__in=names, permissions__content_type__app_label="console") \
        .values_list("permissions__codename", flat=True)
    return frozenset(code for code in codenames if code)


class ConsoleAccess:
    """Who is asking, for which tenant, with which permissions (computed once per request)."""

    def __init__(self, user: Any) -> None:
        self.user = user
        try:
            self.tenant = user_tenant_get(user=user) if getattr(user, "is_authenticated", False) else None
        except ApplicationError:
            self.tenant = None
        self.roles = console_roles(user, self.tenant)
        self.permissions = role_permissions(self.roles)

    def has(self, permission: str) -> bool:
        if permission not in PERMISSIONS:
            raise ValueError(f"Unknown console permission {permission!r}")
        return permission in self.permissions

    def require(self, permission: str) -> None:
        if not self.has(permission):
            raise ApplicationError(
                ErrorCode.PERMISSION_DENIED,
                f"Your role ({', '.join(self.roles) or 'none'}) may not {PERMISSIONS[permission].lower()}.",
                data={"permission": permission},
            )


def console_access(request: HttpRequest) -> ConsoleAccess:
    access = getattr(request, "_console_access", None)
    if access is None:
        access = ConsoleAccess(request.user)
        request._console_access = access
    return access


def console_view(permission: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Decorate a console view: signed-out users go to the login page, others need `permission`.

    A denial raises ApplicationError(PERMISSION_DENIED); the core middleware renders it as a 403.
    """
    if permission not in PERMISSIONS:
        raise ValueError(f"Unknown console permission {permission!r}")

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect(f"/accounts/login/?next={request.path}")
            access = console_access(request)
            access.require(permission)
            return view(request, *args, **kwargs)

        wrapper.console_permission = permission  # the matrix test reads it
        return wrapper

    return decorator
