"""Selectors that read pack versions: the published pack per domain, one version, the domain list."""

from __future__ import annotations

from typing import Any

from apps.core.errors import ApplicationError, ErrorCode
from apps.prompt_packs.models import PackStatus, PackVersion


def pack_published_get(*, domain: str) -> PackVersion:
    """The version new conversations in `domain` use; UNKNOWN_DOMAIN (naming it) when there is none."""
    version = PackVersion.objects.filter(domain=domain, status=PackStatus.PUBLISHED).first()
    if version is None:
        known = ", ".join(item["slug"] for item in domains_list()) or "none published yet"
        raise ApplicationError(
            ErrorCode.UNKNOWN_DOMAIN,
            f"Unknown domain {domain!r} (available: {known}).",
            field="domain",
            data={"domain": domain},
        )
    return version


def pack_version_get(*, pk: int) -> PackVersion:
    """One pack version by primary key, whatever its status (conversations pin archived ones too)."""
    try:
        return PackVersion.objects.get(pk=pk)
    except (PackVersion.DoesNotExist, ValueError, TypeError) as exc:
        raise ApplicationError(ErrorCode.NOT_FOUND, f"Pack version {pk!r} does not exist.") from exc


def pack_versions_list(*, domain: str | None = None) -> list[PackVersion]:
    """Every version, newest first per domain (the console's history view)."""
    versions = PackVersion.objects.select_related("created_by", "approved_by")
    if domain is not None:
        versions = versions.filter(domain=domain)
    return list(versions.order_by("domain", "-version"))


def domains_list() -> list[dict[str, Any]]:
    """The domains a customer can pick: those with a published pack, as slug, title and description."""
    published = PackVersion.objects.filter(status=PackStatus.PUBLISHED).order_by("domain")
    return [{"slug": v.domain, "title": v.title, "description": v.description} for v in published]
