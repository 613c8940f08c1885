"""Tenants, users and roles; the demo setup; sign-up, login and logout on the web front door."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client

from apps.accounts.models import DEMO_TENANT_SLUG, Membership, Role, User
from apps.accounts.selectors import user_role_get, user_tenant_get
from apps.accounts.services import demo_setup, demo_tenant_get, user_create
from apps.core.errors import ApplicationError, ErrorCode

pytestmark = pytest.mark.django_db


def test_demo_setup_prints_working_credentials_for_a_customer_and_an_expert(capsys):
    call_command("demo_setup")
    out = capsys.readouterr().out
    creds = dict(line.split("username: ")[1].split("  password: ")[0:2] for line in out.splitlines())
    assert set(creds) == {"demo-customer", "demo-expert"}
    tenant = demo_tenant_get()
    assert tenant.slug == DEMO_TENANT_SLUG
    for username, rest in creds.items():
        password = rest.split()[0]
        client = Client()
        assert client.login(username=username, password=password), username
    expert = User.objects.get(username="demo-expert")
    assert user_role_get(user=expert, tenant=tenant) == Role.EXPERT and expert.is_staff


def test_demo_setup_is_repeatable_and_resets_passwords():
    first = demo_setup(password="one-password-123")
    second = demo_setup(password="two-password-456")
    assert [c.created for c in first] == [True, True] and [c.created for c in second] == [False, False]
    assert Client().login(username="demo-customer", password="two-password-456")
    assert Membership.objects.filter(tenant__slug="demo").count() == 2


def test_user_create_refuses_duplicates_and_weak_passwords():
    tenant = demo_tenant_get()
    user_create(tenant=tenant, username="bob", password="a-long-enough-passphrase")
    with pytest.raises(ApplicationError) as dup:
        user_create(tenant=tenant, username="BOB", password="a-long-enough-passphrase")
    assert dup.value.code == ErrorCode.CONFLICT
    with pytest.raises(ApplicationError) as weak:
        user_create(tenant=tenant, username="carol", password="123")
    assert weak.value.field == "password"
    assert not User.objects.filter(username="carol").exists()


def test_signup_logs_the_customer_in_and_lands_on_the_chat(packs):
    client = Client()
    response = client.post("/accounts/signup/", {"username": "dora", "email": "",
                                                 "password1": "sunny-garden-4821", "password2": "sunny-garden-4821"})
    assert response.status_code == 302 and response["Location"] == "/chat/"
    user = User.objects.get(username="dora")
    assert user_tenant_get(user=user).slug == "demo"
    assert client.get("/chat/").status_code == 200


def test_signup_with_mismatched_passwords_is_refused():
    response = Client().post("/accounts/signup/", {"username": "erin", "password1": "sunny-garden-4821",
                                                   "password2": "other-garden-4821"})
    assert response.status_code == 400 and not User.objects.filter(username="erin").exists()


def test_login_then_logout_by_post():
    demo_setup(password="demo-pass-789")
    client = Client()
    response = client.post("/accounts/login/", {"username": "demo-customer", "password": "demo-pass-789"})
    assert response.status_code == 302 and response["Location"] == "/chat/"
    assert client.get("/accounts/logout/").status_code == 405  # logout only by POST (CSRF-protected)
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/chat/").status_code == 302  # back to the login page
