"""Pack selectors and the admin: what the chat's domain picker and the turn code read."""

from __future__ import annotations

import pytest
from django.contrib import admin

from apps.core.errors import ApplicationError, ErrorCode
from apps.prompt_packs.models import PackVersion
from apps.prompt_packs.selectors import domains_list, pack_published_get, pack_version_get, pack_versions_list
from apps.prompt_packs.services import pack_version_archive, packs_load
from tests.apps.prompt_packs.conftest import DOMAINS, pack_yaml_edit

pytestmark = pytest.mark.django_db


def test_domains_list_shows_published_packs_in_order():
    packs_load(root=DOMAINS)
    listed = domains_list()
    assert [item["slug"] for item in listed] == ["finance", "legal", "medical"]
    assert listed[2]["title"] == "Medical information"
    assert "Not a diagnosis" in listed[2]["description"]


def test_unknown_domain_is_named_in_the_error():
    packs_load(root=DOMAINS)
    with pytest.raises(ApplicationError) as caught:
        pack_published_get(domain="astrology")
    error = caught.value
    assert error.code == ErrorCode.UNKNOWN_DOMAIN and error.status == 400
    assert "'astrology'" in error.message and "finance, legal, medical" in error.message
    assert error.field == "domain"


def test_a_withdrawn_domain_is_unknown_to_new_conversations():
    packs_load(root=DOMAINS)
    pack_version_archive(version=pack_published_get(domain="legal"))
    with pytest.raises(ApplicationError):
        pack_published_get(domain="legal")
    assert [item["slug"] for item in domains_list()] == ["finance", "medical"]


def test_a_pinned_version_stays_readable_after_a_new_one_is_published(packs_root):
    packs_load(root=packs_root)
    pinned = pack_published_get(domain="finance")
    pack_yaml_edit(packs_root, "finance", lambda d: d.update(disclaimer=d["disclaimer"] + " Updated."))
    packs_load(root=packs_root)

    again = pack_version_get(pk=pinned.pk)
    assert again.version == 1 and not again.disclaimer.endswith("Updated.")
    assert pack_published_get(domain="finance").disclaimer.endswith("Updated.")
    assert [v.version for v in pack_versions_list(domain="finance")] == [2, 1]


@pytest.mark.parametrize("pk", [999_999, "abc", None])
def test_missing_version_is_not_found(pk):
    with pytest.raises(ApplicationError) as caught:
        pack_version_get(pk=pk)
    assert caught.value.code == ErrorCode.NOT_FOUND


def test_admin_shows_versions_but_cannot_change_them(rf):
    model_admin = admin.site._registry[PackVersion]
    request = rf.get("/")
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)


def test_admin_content_view_escapes_pack_text():
    model_admin = admin.site._registry[PackVersion]
    version = PackVersion(
        domain="finance", version=1, data={"title": "<script>alert(1)</script>"}, digest="a" * 64
    )
    shown = model_admin.pretty_data(version)
    assert "<script>" not in shown and "&lt;script&gt;" in shown
    assert model_admin.short_digest(version) == "a" * 12
