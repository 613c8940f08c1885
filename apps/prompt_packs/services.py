"""Services that write pack versions: load from `domains/`, and the draft -> published lifecycle.

Lifecycle (four eyes: the author never approves their own draft):

    draft --approve--> approved --publish--> published --(next publish)--> archived
    draft/approved --archive--> archived          archived (once approved) --publish--> published (rollback)

Publishing a version archives the domain's previously published one in the same transaction, so a
domain always has at most one published version (the database enforces it too).
`packs_load` is the deployment path: packs in git were reviewed there, so it publishes directly.
Every state change appends an audit record (`pack.loaded`, `pack.approved`, `pack.published`,
`pack.archived`) in the same transaction: packs are supervised communications (FINRA 3110/2210).

Canary share: `pack_canary_set` gives a percentage of a domain's NEW conversations an approved, not yet
published candidate (`selectors.pack_for_new_conversation` does the assignment); `pack_canary_clear`
ends it. Publishing any version of the domain, or archiving the candidate, ends the share too (audited
`pack.canary_cleared`), so a canary never outlives the baseline it was set against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_append
from apps.core.errors import ApplicationError, ErrorCode
from apps.prompt_packs.models import PackCanary, PackStatus, PackVersion
from apps.prompt_packs.schema import (
    PackValidationError,
    pack_data_validate,
    pack_digest,
    pack_dirs,
    pack_validate,
)


def packs_load(*, root: Path, actor: Any = None) -> list[PackVersion]:
    """Validate every pack under `root`, then publish a new version for each domain whose content changed.

    All packs are validated before anything is written, so one broken pack loads nothing.
    Returns the versions created (empty when nothing changed: loading is idempotent).
    """
    packs = [pack_validate(folder) for folder in pack_dirs(root)]
    created: list[PackVersion] = []
    with transaction.atomic():
        for data in packs:
            digest = pack_digest(data)
            current = PackVersion.objects.filter(domain=data["domain"], status=PackStatus.PUBLISHED).first()
            if current is not None and current.digest == digest:
                continue
            version = _version_create(domain=data["domain"], data=data, digest=digest, actor=actor)
            _audit("pack.loaded", version, actor, source=str(root / data["domain"]))
            _publish(version, actor)
            created.append(version)
    return created


def pack_version_create_draft(
    *, domain: str, data: dict[str, Any], actor: Any = None, source: str | None = None
) -> PackVersion:
    """Create a draft from pack content (e.g. edited in the console); validated like a pack file."""
    try:
        data = pack_data_validate(data, source=source or f"draft of {domain}")
    except PackValidationError as exc:
        raise ApplicationError(ErrorCode.VALIDATION, str(exc), field=exc.field or None) from exc
    if data["domain"] != domain:
        raise ApplicationError(
            ErrorCode.VALIDATION,
            f"The pack says domain {data['domain']!r}, expected {domain!r}.",
            field="domain",
        )
    with transaction.atomic():
        return _version_create(domain=domain, data=data, digest=pack_digest(data), actor=actor)


@transaction.atomic
def pack_version_approve(*, version: PackVersion, actor: Any) -> PackVersion:
    """Approve a draft. The approver must be a known user other than the draft's author."""
    version = _locked(version)
    _require_status(version, {PackStatus.DRAFT}, "approve")
    if actor is None:
        raise ApplicationError(
            ErrorCode.PERMISSION_DENIED, "Approving a pack version needs a signed-in approver."
        )
    if version.created_by_id is not None and version.created_by_id == actor.pk:
        raise ApplicationError(
            ErrorCode.PERMISSION_DENIED,
            f"{version} was drafted by you; a second person must approve it.",
            data={"version": version.pk},
        )
    version.status = PackStatus.APPROVED
    version.approved_by = actor
    version.approved_at = timezone.now()
    version.save(update_fields=["status", "approved_by", "approved_at"])
    _audit("pack.approved", version, actor)
    return version


@transaction.atomic
def pack_version_publish(*, version: PackVersion, actor: Any = None) -> PackVersion:
    """Publish an approved version (or re-publish a once-approved archived one: rollback)."""
    version = _locked(version)
    if version.status == PackStatus.ARCHIVED and version.approved_at is None and version.published_at is None:
        raise ApplicationError(
            ErrorCode.CONFLICT,
            f"{version} was never approved; it cannot be published.",
            data={"version": version.pk},
        )
    _require_status(version, {PackStatus.APPROVED, PackStatus.ARCHIVED}, "publish")
    _publish(version, actor)
    return version


@transaction.atomic
def pack_version_archive(*, version: PackVersion, actor: Any = None) -> PackVersion:
    """Archive a draft, an approved or a published version (the last withdraws the domain)."""
    version = _locked(version)
    _require_status(version, {PackStatus.DRAFT, PackStatus.APPROVED, PackStatus.PUBLISHED}, "archive")
    version.status = PackStatus.ARCHIVED
    version.archived_at = timezone.now()
    version.save(update_fields=["status", "archived_at"])
    _audit("pack.archived", version, actor)
    _canary_end(version.domain, actor, reason="archived", only_version=version)
    return version


@transaction.atomic
def pack_canary_set(*, version: PackVersion, percent: Any, actor: Any) -> PackCanary:
    """Send `percent` (1-99) of the domain's new conversations to `version`, an approved candidate.

    Replaces the domain's previous share, if any. The domain needs a published version to compare
    against; the candidate must be approved (four eyes and a passing evaluation happened already).
    """
    try:
        share = int(percent)
    except (TypeError, ValueError):
        share = -1
    if str(percent).strip() != str(share) or not 1 <= share <= 99:
        raise ApplicationError(
            ErrorCode.VALIDATION, "The canary share is a whole percentage from 1 to 99.", field="percent"
        )
    version = _locked(version)
    _require_status(version, {PackStatus.APPROVED}, "send a canary share to")
    if not PackVersion.objects.filter(domain=version.domain, status=PackStatus.PUBLISHED).exists():
        raise ApplicationError(
            ErrorCode.CONFLICT,
            f"{version.domain} has no published version for the canary to be compared against.",
            field="status",
        )
    previous = PackCanary.objects.select_for_update().filter(domain=version.domain).first()
    canary, _created = PackCanary.objects.update_or_create(
        domain=version.domain, defaults={"version": version, "percent": share, "set_by": actor}
    )
    _audit(
        "pack.canary_set", version, actor, percent=share,
        replaced=None if previous is None else {"version": previous.version_id, "percent": previous.percent},
    )
    return canary


@transaction.atomic
def pack_canary_clear(*, domain: str, actor: Any) -> bool:
    """End the domain's canary share; new conversations all get the published version. False if none."""
    return _canary_end(domain, actor, reason="cleared")


def _canary_end(domain: str, actor: Any, *, reason: str, only_version: PackVersion | None = None) -> bool:
    canary = PackCanary.objects.select_for_update().select_related("version").filter(domain=domain).first()
    if canary is None or (only_version is not None and canary.version_id != only_version.pk):
        return False
    version, percent = canary.version, canary.percent
    canary.delete()
    _audit("pack.canary_cleared", version, actor, percent=percent, reason=reason)
    return True


def _version_create(*, domain: str, data: dict[str, Any], digest: str, actor: Any) -> PackVersion:
    # Lock the domain's rows so two concurrent loads cannot pick the same number; the unique
    # constraint on (domain, version) backs this up when the domain has no rows yet.
    # (An aggregate would drop FOR UPDATE, so the numbers are read as rows.)
    numbers = PackVersion.objects.select_for_update().filter(domain=domain).values_list("version", flat=True)
    latest = max(numbers, default=0)
    return PackVersion.objects.create(
        domain=domain,
        version=latest + 1,
        label=str(data.get("version", ""))[:64],
        status=PackStatus.DRAFT,
        data=data,
        digest=digest,
        created_by=actor,
    )


def _publish(version: PackVersion, actor: Any) -> None:
    now = timezone.now()
    previous = (
        PackVersion.objects.select_for_update()
        .filter(domain=version.domain, status=PackStatus.PUBLISHED)
        .exclude(pk=version.pk)
    )
    for old in previous:
        old.status = PackStatus.ARCHIVED
        old.archived_at = now
        old.save(update_fields=["status", "archived_at"])
        _audit("pack.archived", old, actor, replaced_by=version.version)
    version.status = PackStatus.PUBLISHED
    version.published_at = now
    version.archived_at = None
    version.save(update_fields=["status", "published_at", "archived_at"])
    _audit("pack.published", version, actor)
    _canary_end(version.domain, actor, reason="published")


def _audit(event: str, version: PackVersion, actor: Any, **extra: Any) -> None:
    payload = {
        "domain": version.domain,
        "version": version.version,
        "label": version.label,
        "status": version.status,
        "digest": version.digest,
        **extra,
    }
    audit_append(
        event=event, actor=actor, tenant=None, subject=version, payload=payload, pack_version=version
    )


def _locked(version: PackVersion) -> PackVersion:
    # Re-read under a row lock: the caller's instance may be stale (another approver got there first).
    try:
        return PackVersion.objects.select_for_update().get(pk=version.pk)
    except PackVersion.DoesNotExist as exc:
        raise ApplicationError(ErrorCode.NOT_FOUND, f"Pack version {version.pk} does not exist.") from exc


def _require_status(version: PackVersion, allowed: set[str], action: str) -> None:
    if version.status not in allowed:
        wanted = " or ".join(sorted(allowed))
        raise ApplicationError(
            ErrorCode.CONFLICT,
            f"Cannot {action} {version}: it must be {wanted}.",
            field="status",
            data={"version": version.pk, "status": version.status},
        )
