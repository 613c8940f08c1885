"""Fixtures for the console tests: one user per console role in two tenants, flagged conversations.

Memberships are created directly because `accounts.user_create` knows only the accounts app's roles;
the console reads the role string from the membership (see apps/console/roles.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

ROLES = ("customer", "expert", "approver", "auditor", "admin")


@dataclass
class Staff:
    tenant: Any
    users: dict[str, Any]

    def client(self, role: str) -> Client:
        client = Client()
        client.force_login(self.users[role])
        return client


def _staff(slug: str) -> Staff:
    from apps.accounts.models import Membership, User
    from apps.accounts.services import tenant_get_or_create

    tenant = tenant_get_or_create(slug=slug, name=f"{slug.title()} Org")
    users = {}
    for role in ROLES:
        user = User.objects.create_user(username=f"{slug}-{role}", password="pw-for-tests-only-123",
                                        default_tenant=tenant)
        Membership.objects.create(tenant=tenant, user=user, role=role)
        users[role] = user
    return Staff(tenant, users)


@pytest.fixture
def staff(db: Any, packs: Any) -> Staff:
    return _staff("demo")


@pytest.fixture
def other_staff(db: Any, packs: Any) -> Staff:
    return _staff("rival")


@pytest.fixture
def make_flagged(db: Any) -> Any:
    return flagged_reply


def flagged_reply(tenant: Any, user: Any, *, domain: str = "finance", input_action: str = "block",
                  finish_reason: str = "stop", content: str = "I can't help with that.") -> Any:
    """A stored turn whose reply the pipeline flagged, as the worker would have left it."""
    from apps.conversations.models import Message, Role, Status
    from apps.conversations.services import conversation_create

    conversation = conversation_create(tenant=tenant, user=user, domain=domain)
    question = Message.objects.create(conversation=conversation, role=Role.USER, content="How do I structure deposits?",
                                      pack_version=conversation.pack_version, input_action=input_action,
                                      verdicts=[{"stage": "input", "rule": "structuring", "action": input_action,
                                                 "score": 1.0, "latency_ms": 1.0}])
    return Message.objects.create(
        conversation=conversation, role=Role.ASSISTANT, status=Status.COMPLETE, content=content,
        reply_to=question, pack_version=conversation.pack_version, input_action=input_action,
        finish_reason=finish_reason, verdicts=list(question.verdicts),
    )
