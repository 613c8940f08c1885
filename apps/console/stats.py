"""Figures for the dashboards and `/metrics`: conversations, block/escalation/retraction rates, latency;
and the canary comparison (per pack version of a domain: conversations, feedback, block/escalation rates).

Latency of a reply is `completed_at - created_at` of the stored assistant message (queueing included,
which is what a customer waits). Percentiles are computed in Python over a bounded window so that the
same code runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import timedelta
from typing import Any

from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from apps.conversations.models import Conversation, Feedback, Message, Role, Status
from apps.prompt_packs.models import PackStatus, PackVersion
from apps.prompt_packs.selectors import pack_canary_get

LATENCY_WINDOW = 2000  # most recent replies per domain used for p50/p95


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def _replies(tenant: Any = None):
    replies = Message.objects.filter(role=Role.ASSISTANT).exclude(engine_profile="human")
    return replies.filter(conversation__tenant=tenant) if tenant is not None else replies


def domain_stats(*, tenant: Any = None) -> list[dict[str, Any]]:
    """Per domain: conversations, replies, block/escalation/retraction rates, latency p50/p95 (s)."""
    conversations = Conversation.objects.all() if tenant is None else Conversation.objects.filter(tenant=tenant)
    conv_counts = dict(conversations.values_list("domain").annotate(n=Count("id")))
    rows = (_replies(tenant).values("conversation__domain").annotate(
        n=Count("id"),
        blocked=Count("id", filter=Q(input_action="block") | Q(finish_reason="content_filter")),
        escalated=Count("id", filter=Q(input_action="escalate")),
        retracted=Count("id", filter=Q(verdicts__icontains="retract")),
        failed=Count("id", filter=Q(status=Status.FAILED)),
    ))
    out = []
    for row in rows:
        domain, n = row["conversation__domain"], row["n"] or 1
        times = (_replies(tenant).filter(conversation__domain=domain, completed_at__isnull=False)
                 .order_by("-created_at").values_list("created_at", "completed_at")[:LATENCY_WINDOW])
        latencies = [(done - started).total_seconds() for started, done in times]
        out.append({"domain": domain, "conversations": conv_counts.get(domain, 0), "replies": row["n"],
                    "blocked": row["blocked"], "escalated": row["escalated"], "retracted": row["retracted"],
                    "failed": row["failed"], "block_rate": row["blocked"] / n,
                    "escalation_rate": row["escalated"] / n, "retraction_rate": row["retracted"] / n,
                    "latency_p50_s": percentile(latencies, 50), "latency_p95_s": percentile(latencies, 95)})
    for domain, count in conv_counts.items():
        if not any(r["domain"] == domain for r in out):
            out.append({"domain": domain, "conversations": count, "replies": 0, "blocked": 0, "escalated": 0,
                        "retracted": 0, "failed": 0, "block_rate": 0.0, "escalation_rate": 0.0,
                        "retraction_rate": 0.0, "latency_p50_s": None, "latency_p95_s": None})
    return sorted(out, key=lambda r: r["domain"])


def daily_series(*, tenant: Any = None, days: int = 14) -> dict[str, Any]:
    """Conversations per day per domain over the last `days` days (zeros filled in)."""
    since = timezone.now() - timedelta(days=days - 1)
    conversations = Conversation.objects.filter(created_at__gte=since)
    if tenant is not None:
        conversations = conversations.filter(tenant=tenant)
    counts: dict[str, Counter] = defaultdict(Counter)
    for row in conversations.annotate(day=TruncDate("created_at")).values("day", "domain").annotate(n=Count("id")):
        counts[row["domain"]][row["day"].isoformat()] = row["n"]
    labels = [(since + timedelta(days=i)).date().isoformat() for i in range(days)]
    return {"labels": labels, "series": {d: [c.get(day, 0) for day in labels] for d, c in sorted(counts.items())}}


def app_counts() -> dict[str, Any]:
    """Whole-installation counts for /metrics (operations see every tenant)."""
    return {
        "conversations": list(Conversation.objects.values("domain").annotate(n=Count("id")).order_by("domain")),
        "messages": list(Message.objects.values("conversation__domain", "status").annotate(n=Count("id"))
                         .order_by("conversation__domain", "status")),
        "packs": list(PackVersion.objects.values("domain", "status").annotate(n=Count("id"))
                      .order_by("domain", "status")),
        "pending": Message.objects.filter(status__in=(Status.PENDING, Status.STREAMING)).count(),
    }


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def canary_compare(*, tenant: Any, domain: str) -> dict[str, Any]:
    """The domain's published version and canary candidate, and every version the tenant's conversations
    are pinned to, each with its figures; the published and candidate rows first. Conversations count
    under the version they are pinned to, which the canary share chose when they started."""
    canary = pack_canary_get(domain=domain)
    published = PackVersion.objects.filter(domain=domain, status=PackStatus.PUBLISHED).first()
    conversations = Conversation.objects.filter(tenant=tenant, domain=domain)
    conv_counts = dict(conversations.values_list("pack_version").annotate(n=Count("id")))
    replies = (Message.objects.filter(conversation__tenant=tenant, conversation__domain=domain,
                                      role=Role.ASSISTANT, superseded_by__isnull=True)
               .exclude(engine_profile="human"))
    reply_rows = {row["conversation__pack_version"]: row for row in replies.values("conversation__pack_version")
                  .annotate(n=Count("id"),
                            blocked=Count("id", filter=Q(input_action="block") | Q(finish_reason="content_filter")),
                            escalated=Count("id", filter=Q(input_action="escalate")))}
    feedback_rows = {row["message__conversation__pack_version"]: row for row in
                     Feedback.objects.filter(tenant=tenant, message__conversation__domain=domain)
                     .values("message__conversation__pack_version")
                     .annotate(up=Count("id", filter=Q(rating="up")), down=Count("id", filter=Q(rating="down")))}
    wanted = [v for v in (published, canary.version if canary else None) if v is not None]
    others = PackVersion.objects.filter(pk__in=set(conv_counts) - {v.pk for v in wanted}).order_by("-version")
    rows = []
    for version in [*wanted, *others]:
        replies_n = reply_rows.get(version.pk, {}).get("n", 0)
        blocked = reply_rows.get(version.pk, {}).get("blocked", 0)
        escalated = reply_rows.get(version.pk, {}).get("escalated", 0)
        up = feedback_rows.get(version.pk, {}).get("up", 0)
        down = feedback_rows.get(version.pk, {}).get("down", 0)
        role = "published" if version == published else "canary" if canary and version == canary.version \
            else version.status
        rows.append({"version": version, "role": role, "conversations": conv_counts.get(version.pk, 0),
                     "replies": replies_n, "feedback_up": up, "feedback_down": down,
                     "approval_rate": _rate(up, up + down), "blocked": blocked, "escalated": escalated,
                     "block_rate": _rate(blocked, replies_n), "escalation_rate": _rate(escalated, replies_n)})
    total = sum(row["conversations"] for row in rows) or 0
    for row in rows:
        row["share"] = _rate(row["conversations"], total)
    return {"domain": domain, "canary": canary, "published": published, "rows": rows,
            "candidates": list(PackVersion.objects.filter(domain=domain, status=PackStatus.APPROVED)
                               .order_by("-version"))}
