"""`manage.py apikey_create` prints the key as its last line; `apikey_revoke PREFIX` stops it at once."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.accounts.services import demo_tenant_get
from apps.apikeys.models import ApiKey
from apps.apikeys.services import api_key_authenticate
from apps.core.errors import ApplicationError

pytestmark = pytest.mark.django_db


def _create(*args: str) -> str:
    out = StringIO()
    call_command("apikey_create", *args, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def test_apikey_create_prints_a_working_key_last_with_the_domains():
    demo_tenant_get()
    key = _create("--tenant", "demo", "--name", "cli app", "--domains", "finance,medical")
    api_key = api_key_authenticate(raw_key=key)
    assert api_key.allowed_domains == ["finance", "medical"] and api_key.name == "cli app"


def test_apikey_revoke_refuses_the_key_afterwards():
    demo_tenant_get()
    key = _create("--tenant", "demo", "--name", "cli app")
    prefix = key.split("_")[1]
    out = StringIO()
    call_command("apikey_revoke", prefix, stdout=out)
    assert prefix in out.getvalue()
    with pytest.raises(ApplicationError):
        api_key_authenticate(raw_key=key)


def test_unknown_tenant_and_prefix_are_command_errors():
    with pytest.raises(CommandError, match="No tenant"):
        _create("--tenant", "nope", "--name", "x")
    with pytest.raises(CommandError, match="No API key"):
        call_command("apikey_revoke", "abcdefabcdef")
    assert not ApiKey.objects.exists()
