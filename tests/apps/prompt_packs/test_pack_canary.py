"""Canary share of a pack: which version a NEW conversation gets, and setting/ending the share.

Assignment is a pure function of the conversation's id, so these tests use fixed keys and exact counts;
the share is checked over many keys, the way it behaves over many conversations.
"""

from __future__ import annotations

import uuid

import pytest

from apps.audit.models import AuditRecord
from apps.core.errors import ApplicationError, ErrorCode
from apps.prompt_packs.models import PackCanary, PackStatus, PackVersion
from apps.prompt_packs.selectors import (
    canary_bucket,
    pack_canary_get,
    pack_for_new_conversation,
)
from apps.prompt_packs.services import (
    pack_canary_clear,
    pack_canary_set,
    pack_version_approve,
    pack_version_archive,
    pack_version_create_draft,
    pack_version_publish,
    packs_load,
)
from tests.apps.prompt_packs.conftest import DOMAINS

pytestmark = pytest.mark.django_db

KEYS = [uuid.uuid5(uuid.NAMESPACE_URL, f"conversation-{i}") for i in range(4000)]


@pytest.fixture
def candidate(make_user) -> PackVersion:
    """finance v1 published, v2 approved (drafted by one person, approved by another)."""
    packs_load(root=DOMAINS)
    published = PackVersion.objects.get(domain="finance", status=PackStatus.PUBLISHED)
    data = {**published.data, "title": "Financial guidance (candidate)"}
    draft = pack_version_create_draft(domain="finance", data=data, actor=make_user("author"))
    return pack_version_approve(version=draft, actor=make_user("approver"))


def _versions(keys) -> list[int]:
    return [pack_for_new_conversation(domain="finance", key=key).version for key in keys]


def test_without_a_canary_every_new_conversation_gets_the_published_version(candidate):
    assert set(_versions(KEYS[:50])) == {1}


def test_the_share_is_deterministic_per_conversation_and_matches_the_percentage(candidate, make_user):
    pack_canary_set(version=candidate, percent=25, actor=make_user("ops"))
    first = _versions(KEYS)
    assert _versions(KEYS) == first  # the same conversation id always gets the same version
    share = first.count(2) / len(first)
    assert abs(share - 0.25) < 0.02, share
    # the share is exactly the buckets below 25 %: the assignment is the bucket rule, nothing random
    assert first == [2 if canary_bucket(key) < 2500 else 1 for key in KEYS]


def test_raising_the_share_keeps_earlier_canary_conversations_on_the_candidate(candidate, make_user):
    pack_canary_set(version=candidate, percent=10, actor=make_user("ops"))
    at_ten = _versions(KEYS)
    pack_canary_set(version=candidate, percent=50, actor=make_user("ops2"))
    at_fifty = _versions(KEYS)
    assert all(b == 2 for a, b in zip(at_ten, at_fifty, strict=True) if a == 2)
    assert abs(at_fifty.count(2) / len(KEYS) - 0.5) < 0.03
    assert PackCanary.objects.count() == 1


@pytest.mark.parametrize("percent", [0, 100, -5, "ten", "12.5", None])
def test_the_share_is_a_whole_percentage_from_1_to_99(candidate, make_user, percent):
    with pytest.raises(ApplicationError) as caught:
        pack_canary_set(version=candidate, percent=percent, actor=make_user("ops"))
    assert caught.value.code == ErrorCode.VALIDATION and caught.value.field == "percent"
    assert not PackCanary.objects.exists()


def test_only_an_approved_version_can_be_a_candidate(candidate, make_user):
    published = PackVersion.objects.get(domain="finance", status=PackStatus.PUBLISHED)
    draft = pack_version_create_draft(domain="finance", data=dict(published.data), actor=make_user("author2"))
    for version in (published, draft):
        with pytest.raises(ApplicationError) as caught:
            pack_canary_set(version=version, percent=10, actor=make_user(f"ops-{version.pk}"))
        assert caught.value.code == ErrorCode.CONFLICT


def test_set_and_clear_are_audited_and_clearing_sends_everyone_to_the_published_version(candidate, make_user):
    ops = make_user("ops")
    pack_canary_set(version=candidate, percent=30, actor=ops)
    record = AuditRecord.objects.get(event="pack.canary_set")
    assert (record.actor, record.pack_version) == ("user:ops", "finance@2")
    assert pack_canary_clear(domain="finance", actor=ops) is True
    assert AuditRecord.objects.filter(event="pack.canary_cleared").count() == 1
    assert set(_versions(KEYS[:200])) == {1}
    assert pack_canary_clear(domain="finance", actor=ops) is False  # nothing to end: no record
    assert AuditRecord.objects.filter(event="pack.canary_cleared").count() == 1


def test_publishing_or_archiving_the_candidate_ends_the_share(candidate, make_user):
    ops = make_user("ops")
    pack_canary_set(version=candidate, percent=30, actor=ops)
    pack_version_publish(version=candidate, actor=ops)
    assert not PackCanary.objects.exists()
    cleared = AuditRecord.objects.filter(event="pack.canary_cleared").get()
    assert cleared.seq > AuditRecord.objects.get(event="pack.published", pack_version="finance@2").seq
    assert set(_versions(KEYS[:50])) == {2}

    data = {**candidate.data, "title": "Another candidate"}
    third = pack_version_approve(version=pack_version_create_draft(domain="finance", data=data, actor=ops),
                                 actor=make_user("approver2"))
    pack_canary_set(version=third, percent=40, actor=ops)
    pack_version_archive(version=third, actor=ops)
    assert pack_canary_get(domain="finance") is None and not PackCanary.objects.exists()


def test_a_canary_alone_does_not_open_a_domain(candidate, make_user):
    pack_canary_set(version=candidate, percent=50, actor=make_user("ops"))
    pack_version_archive(version=PackVersion.objects.get(domain="finance", status=PackStatus.PUBLISHED))
    with pytest.raises(ApplicationError) as caught:
        pack_for_new_conversation(domain="finance", key=KEYS[0])
    assert caught.value.code == ErrorCode.UNKNOWN_DOMAIN


def test_a_canary_needs_a_published_version_to_compare_against(candidate, make_user):
    pack_version_archive(version=PackVersion.objects.get(domain="finance", status=PackStatus.PUBLISHED))
    with pytest.raises(ApplicationError) as caught:
        pack_canary_set(version=candidate, percent=10, actor=make_user("ops"))
    assert caught.value.code == ErrorCode.CONFLICT
