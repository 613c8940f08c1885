"""Pack services: loading from domains/ is idempotent and versioned; the lifecycle keeps four eyes."""

from __future__ import annotations

import pytest

from apps.core.errors import ApplicationError, ErrorCode
from apps.prompt_packs.models import PackStatus, PackVersion
from apps.prompt_packs.schema import PackValidationError, pack_validate
from apps.prompt_packs.services import (
    pack_version_approve,
    pack_version_archive,
    pack_version_create_draft,
    pack_version_publish,
    packs_load,
)
from tests.apps.prompt_packs.conftest import DOMAINS, REAL_DOMAINS, pack_yaml_edit

pytestmark = pytest.mark.django_db


def _published(domain: str) -> PackVersion:
    return PackVersion.objects.get(domain=domain, status=PackStatus.PUBLISHED)


def test_real_packs_load_and_publish_version_one():
    created = packs_load(root=DOMAINS)
    assert sorted(v.domain for v in created) == list(REAL_DOMAINS)
    for version in created:
        assert (version.version, version.status) == (1, PackStatus.PUBLISHED)
        assert version.published_at is not None
        assert len(version.digest) == 64
    legal = _published("legal")
    assert "not a substitute for the advice of an attorney" in legal.disclaimer
    assert legal.sampling["temperature"] == 0.6
    assert legal.title == "Legal information"
    assert len(legal.evals) >= 40


def test_loading_twice_creates_no_new_versions():
    packs_load(root=DOMAINS)
    assert packs_load(root=DOMAINS) == []
    assert PackVersion.objects.count() == len(REAL_DOMAINS)


def test_editing_a_pack_publishes_a_new_version_and_archives_the_old(packs_root, make_user):
    packs_load(root=packs_root)
    old = _published("finance")
    pack_yaml_edit(packs_root, "finance", lambda d: d.update(title="Personal finance"))

    expert = make_user("expert")
    created = packs_load(root=packs_root, actor=expert)

    assert [(v.domain, v.version) for v in created] == [("finance", 2)]
    new = _published("finance")
    assert new.title == "Personal finance" and new.created_by == expert
    old.refresh_from_db()
    assert old.status == PackStatus.ARCHIVED and old.archived_at is not None
    assert _published("legal").version == 1  # untouched domains keep their version


def test_a_broken_pack_loads_nothing(packs_root):
    pack_yaml_edit(packs_root, "medical", lambda d: d["sampling"].update(top_p=0))
    with pytest.raises(PackValidationError) as caught:
        packs_load(root=packs_root)
    assert caught.value.field == "sampling.top_p"
    assert PackVersion.objects.count() == 0  # finance and legal were valid, but nothing was written


def _draft(author):
    data = pack_validate(DOMAINS / "finance")
    return pack_version_create_draft(domain="finance", data={**data, "version": "draft-1"}, actor=author)


def test_draft_approve_publish_by_two_people(make_user):
    packs_load(root=DOMAINS)
    author, approver = make_user("author"), make_user("approver")
    draft = _draft(author)
    assert (draft.status, draft.version, draft.label) == (PackStatus.DRAFT, 2, "draft-1")

    approved = pack_version_approve(version=draft, actor=approver)
    assert approved.approved_by == approver and approved.approved_at is not None
    published = pack_version_publish(version=approved, actor=approver)

    assert published.status == PackStatus.PUBLISHED
    assert PackVersion.objects.get(domain="finance", version=1).status == PackStatus.ARCHIVED


def test_the_author_cannot_approve_their_own_draft(make_user):
    author = make_user("author")
    draft = _draft(author)
    with pytest.raises(ApplicationError) as caught:
        pack_version_approve(version=draft, actor=author)
    assert caught.value.code == ErrorCode.PERMISSION_DENIED
    draft.refresh_from_db()
    assert draft.status == PackStatus.DRAFT and draft.approved_by is None


def test_approval_needs_an_approver(make_user):
    with pytest.raises(ApplicationError) as caught:
        pack_version_approve(version=_draft(make_user("author")), actor=None)
    assert caught.value.code == ErrorCode.PERMISSION_DENIED


def test_a_draft_cannot_be_published_before_approval(make_user):
    with pytest.raises(ApplicationError) as caught:
        pack_version_publish(version=_draft(make_user("author")))
    assert caught.value.code == ErrorCode.CONFLICT


def test_an_archived_unapproved_draft_cannot_be_published(make_user):
    draft = pack_version_archive(version=_draft(make_user("author")))
    with pytest.raises(ApplicationError) as caught:
        pack_version_publish(version=draft)
    assert caught.value.code == ErrorCode.CONFLICT


def test_rollback_republishes_an_archived_version(packs_root):
    packs_load(root=packs_root)
    pack_yaml_edit(packs_root, "legal", lambda d: d.update(title="Legal help"))
    packs_load(root=packs_root)
    first = PackVersion.objects.get(domain="legal", version=1)

    pack_version_publish(version=first)

    assert _published("legal").version == 1
    assert PackVersion.objects.get(domain="legal", version=2).status == PackStatus.ARCHIVED


def test_approving_twice_is_a_conflict(make_user):
    draft = _draft(make_user("author"))
    approver = make_user("approver")
    pack_version_approve(version=draft, actor=approver)
    with pytest.raises(ApplicationError) as caught:
        pack_version_approve(version=draft, actor=approver)  # the stale instance still says draft
    assert caught.value.code == ErrorCode.CONFLICT


def test_archiving_an_archived_version_is_a_conflict(make_user):
    draft = pack_version_archive(version=_draft(make_user("author")))
    with pytest.raises(ApplicationError):
        pack_version_archive(version=draft)


def test_invalid_draft_content_is_a_validation_error(make_user):
    data = pack_validate(DOMAINS / "finance")
    data["sampling"] = {**data["sampling"], "max_tokens": 0}
    with pytest.raises(ApplicationError) as caught:
        pack_version_create_draft(domain="finance", data=data, actor=make_user("author"))
    assert caught.value.code == ErrorCode.VALIDATION
    assert caught.value.field == "sampling.max_tokens"


def test_draft_for_the_wrong_domain_is_refused(make_user):
    data = pack_validate(DOMAINS / "finance")
    with pytest.raises(ApplicationError) as caught:
        pack_version_create_draft(domain="legal", data=data, actor=make_user("author"))
    assert caught.value.field == "domain"


def _events() -> list[tuple[str, str, str]]:
    from apps.audit.models import AuditRecord

    return list(AuditRecord.objects.order_by("seq").values_list("event", "actor", "pack_version"))


def test_every_state_change_is_audited(packs_root, make_user):
    packs_load(root=packs_root)
    assert _events() == [
        (event, "system", f"{domain}@1")
        for domain in ("finance", "legal", "medical")
        for event in ("pack.loaded", "pack.published")
    ]

    author, approver = make_user("author"), make_user("approver")
    draft = _draft(author)
    pack_version_approve(version=draft, actor=approver)
    pack_version_publish(version=draft, actor=approver)
    assert _events()[6:] == [
        ("pack.approved", "user:approver", "finance@2"),
        ("pack.archived", "user:approver", "finance@1"),
        ("pack.published", "user:approver", "finance@2"),
    ]


def test_a_refused_approval_leaves_no_audit_record(make_user):
    author = make_user("author")
    draft = _draft(author)
    with pytest.raises(ApplicationError):
        pack_version_approve(version=draft, actor=author)
    assert _events() == []
