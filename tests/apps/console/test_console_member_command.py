"""`manage.py console_member` names approvers, auditors and admins (sign-up cannot)."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command


def test_creates_a_user_with_the_role_and_updates_it(db, capsys):
    from apps.accounts.models import Membership
    from apps.accounts.services import demo_tenant_get

    demo_tenant_get()
    call_command("console_member", "rita", "approver", "--password", "pw-123-abc")
    assert "rita: approver in demo  password: pw-123-abc" in capsys.readouterr().out
    call_command("console_member", "rita", "auditor")
    assert Membership.objects.get(user__username="rita").role == "auditor"
    with pytest.raises(CommandError, match="No tenant"):
        call_command("console_member", "rita", "admin", "--tenant", "nowhere")
