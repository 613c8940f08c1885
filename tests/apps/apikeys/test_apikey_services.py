"""API key services: issue once, store only a keyed hash, refuse revoked/expired/unknown keys, audit both."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.accounts.services import demo_tenant_get, tenant_get_or_create
from apps.apikeys.models import ApiKey
from apps.apikeys.services import api_key_authenticate, api_key_create, api_key_revoke, usage_record
from apps.audit.models import AuditRecord
from apps.core.errors import ApplicationError, ErrorCode

pytestmark = pytest.mark.django_db


def _refused(raw: str) -> str:
    with pytest.raises(ApplicationError) as info:
        api_key_authenticate(raw_key=raw)
    assert info.value.code == ErrorCode.INVALID_API_KEY and info.value.status == 401
    return info.value.message


def test_issued_key_has_the_documented_shape_and_authenticates():
    issued = api_key_create(tenant=demo_tenant_get(), name="mobile app", domains=["finance"], actor="tester")
    prefix = issued.api_key.prefix
    assert issued.plaintext.startswith(f"vk_{prefix}_") and len(issued.plaintext) > 40
    found = api_key_authenticate(raw_key=issued.plaintext)
    assert found.pk == issued.api_key.pk and found.tenant.slug == "demo"
    assert found.allowed_domains == ["finance"] and found.allows_domain("finance")
    assert not found.allows_domain("medical")
    assert found.last_used_at is not None


def test_no_plaintext_secret_is_stored_anywhere_in_the_database():
    issued = api_key_create(tenant=demo_tenant_get(), name="secret check")
    secret = issued.plaintext.split("_", 2)[2]
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')
            for row in cursor.fetchall():
                assert not any(isinstance(v, str) and secret in v for v in row), table
                assert not any(isinstance(v, str) and issued.plaintext in v for v in row), table


def test_issue_and_revoke_are_audited_without_the_secret():
    issued = api_key_create(tenant=demo_tenant_get(), name="audited", actor="tester")
    api_key_revoke(prefix=issued.api_key.prefix, actor="tester")
    events = list(AuditRecord.objects.filter(subject=f"apikey:{issued.api_key.prefix}").values_list("event", flat=True))
    assert events == ["apikey.issued", "apikey.revoked"]


def test_a_revoked_key_is_refused_on_its_next_request():
    issued = api_key_create(tenant=demo_tenant_get(), name="to revoke")
    api_key_authenticate(raw_key=issued.plaintext)
    api_key_revoke(prefix=issued.api_key.prefix)
    assert "revoked" in _refused(issued.plaintext)


def test_an_expired_key_is_refused():
    issued = api_key_create(tenant=demo_tenant_get(), name="short", expires_at=timezone.now() + timedelta(seconds=60))
    ApiKey.objects.filter(pk=issued.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert "expired" in _refused(issued.plaintext)


def test_a_wrong_secret_with_a_real_prefix_is_refused():
    issued = api_key_create(tenant=demo_tenant_get(), name="real")
    _refused(f"vk_{issued.api_key.prefix}_{secrets.token_urlsafe(32)}")


def test_ten_thousand_random_keys_are_all_refused():
    api_key_create(tenant=demo_tenant_get(), name="the only real key")
    for _ in range(10_000):
        _refused(f"vk_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}")


@pytest.mark.parametrize("raw", ["", "sk-abc", "vk_short_x", "vk__" + "a" * 40, "Bearer vk_x", "vk_" + "A" * 12 + "_" + "b" * 40])
def test_malformed_keys_are_refused(raw):
    _refused(raw)


def test_a_disabled_tenant_disables_its_keys():
    tenant = tenant_get_or_create(slug="acme", name="Acme")
    issued = api_key_create(tenant=tenant, name="acme app")
    tenant.is_active = False
    tenant.save()
    _refused(issued.plaintext)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"name": ""}, "name"),
    ({"name": "x", "domains": ["Not A Slug!"]}, "domain"),
    ({"name": "x", "endpoints": ["admin"]}, "endpoint"),
    ({"name": "x", "requests_per_minute": 0}, "requests_per_minute"),
    ({"name": "x", "expires_at": timezone.now() - timedelta(days=1)}, "expires_at"),
])
def test_bad_issue_requests_are_refused_with_the_field_named(kwargs, field):
    with pytest.raises(ApplicationError) as info:
        api_key_create(tenant=demo_tenant_get(), **kwargs)
    assert info.value.field == field
    assert not ApiKey.objects.exists()


def test_revoking_an_unknown_prefix_is_a_clear_error():
    with pytest.raises(ApplicationError) as info:
        api_key_revoke(prefix="nosuchprefix")
    assert info.value.code == ErrorCode.NOT_FOUND


def test_usage_is_recorded_once_per_reply():
    issued = api_key_create(tenant=demo_tenant_get(), name="billing")
    reply_id = "7f3c1f9e-1111-4a4a-9b9b-0123456789ab"
    usage_record(api_key=issued.api_key, reply_id=reply_id, model="finance", prompt_tokens=10, completion_tokens=5)
    usage_record(api_key=issued.api_key, reply_id=reply_id, model="finance", prompt_tokens=10, completion_tokens=5)
    assert issued.api_key.usage.count() == 1
