"""Selectors that read pack versions: the published pack per domain, one version, the domain list, and
the pack a NEW conversation gets (the published one, or the canary candidate for its share).

Canary assignment is a pure function of the conversation's key (its id): sha256(key) picks one of
10,000 buckets, and the first `percent` x 100 buckets get the candidate. The same key always gets the
same answer, and over many uniformly random keys (uuid4 ids) the candidate's share converges on
`percent`; a conversation keeps whatever it was given (`Conversation.pack_version` is pinned).
"""

from __future__ import annotations

import hashlib
from typing import Any

from apps.core.errors import ApplicationError, ErrorCode
from apps.prompt_packs.models import PackCanary, PackStatus, PackVersion


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


CANARY_BUCKETS = 10_000


def canary_bucket(key: Any) -> int:
    """The conversation's bucket in [0, CANARY_BUCKETS): stable for a key, uniform over random keys."""
    digest = hashlib.sha256(str(key).encode()).digest()
    return int.from_bytes(digest[:8], "big") % CANARY_BUCKETS


def pack_canary_get(*, domain: str) -> PackCanary | None:
    """The domain's canary share while its candidate is still approved (a stale one counts as none)."""
    canary = PackCanary.objects.select_related("version", "set_by").filter(domain=domain).first()
    if canary is None or canary.version.status != PackStatus.APPROVED:
        return None
    return canary


def pack_for_new_conversation(*, domain: str, key: Any) -> PackVersion:
    """The version a new conversation in `domain` starts on; `key` is the conversation's id.

    The published version, except for the conversations whose bucket falls in the canary share, which
    get the candidate. UNKNOWN_DOMAIN when the domain has no published version (a canary alone does not
    open a domain to customers).
    """
    published = pack_published_get(domain=domain)
    canary = pack_canary_get(domain=published.domain)
    if canary is not None and canary_bucket(key) < canary.percent * (CANARY_BUCKETS // 100):
        return canary.version
    return published
