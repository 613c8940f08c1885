"""Tenants, users and memberships: a user holds one role per tenant (customer, expert, compliance, admin).

A bank, clinic or law firm is a Tenant; its end customers and its staff are Users with a Membership.
The demo tenant has slug `demo`.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models

from apps.core.models import BaseModel

DEMO_TENANT_SLUG = "demo"


class User(AbstractUser):
    """Django's user with a stable default tenant for the web front door."""

    default_tenant = models.ForeignKey(
        "accounts.Tenant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )


class Tenant(BaseModel):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.slug


class Role(models.TextChoices):
    CUSTOMER = "customer", "Customer"
    EXPERT = "expert", "Domain expert"
    COMPLIANCE = "compliance", "Compliance officer"
    ADMIN = "admin", "Tenant administrator"


class Membership(BaseModel):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.CUSTOMER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_user_tenant")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.role})"
