"""Erasure of a data subject (GDPR Art. 17) and legal holds, without touching a single audit row.

`subject_erase(*, user)` runs, in one transaction: the legal-hold check (an active hold on the user's
tenant or on the user refuses the erasure), every registered eraser (the subject's conversations and
what hangs off them: messages, outbox rows, feedback, handoff requests, review items), the
anonymisation of the account (name, e-mail and username replaced, password unusable, deactivated),
and the destruction of the subject's payload key. The audit records stay as they are and still verify:
what they held of the person was ciphertext under that key. A `subject.erased` record closes it.

Layering: audit sits below conversations, so it never imports it. Apps above register erasers with
`subject_eraser_register`; the default plan reaches the conversation tables through Django's app
registry by label (`DEFAULT_ERASURE_PLAN`), which the import contracts allow and which a missing app skips.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.audit.models import LegalHold, SubjectKey
from apps.audit.services import audit_append, subject_ref
from apps.core.errors import ApplicationError, ErrorCode

Eraser = Callable[[Any], int]

# (app label, model, field naming the user): rows deleted with the subject (cascades follow).
DEFAULT_ERASURE_PLAN: tuple[tuple[str, str, str], ...] = (
    ("conversations", "Conversation", "user"),
    ("conversations", "Feedback", "user"),
    ("conversations", "HandoffRequest", "requested_by"),
)

_ERASERS: dict[str, Eraser] = {}


def subject_eraser_register(name: str, eraser: Eraser, *, first: bool = False) -> None:
    """Add an eraser `eraser(user) -> rows removed`; apps above audit call this from AppConfig.ready().
    `first=True` runs it before every eraser registered so far (one that reads rows the default plan
    deletes, such as the ids of the subject's replies)."""
    global _ERASERS
    _ERASERS.pop(name, None)
    _ERASERS = {name: eraser, **_ERASERS} if first else {**_ERASERS, name: eraser}


def _plan_eraser(app_label: str, model_name: str, field: str) -> Eraser:
    def erase(user: Any) -> int:
        try:
            model = django_apps.get_model(app_label, model_name)
        except LookupError:
            return 0
        deleted, _ = model.objects.filter(**{field: user}).delete()
        return deleted
    return erase


for _app, _model, _field in DEFAULT_ERASURE_PLAN:
    subject_eraser_register(f"{_app}.{_model}", _plan_eraser(_app, _model, _field))


def _tenant_slugs(user: Any) -> set[str]:
    slugs = set()
    memberships = getattr(user, "memberships", None)
    if memberships is not None:
        slugs |= set(memberships.values_list("tenant__slug", flat=True))
    default = getattr(user, "default_tenant", None)
    if default is not None:
        slugs.add(default.slug)
    return slugs


def legal_holds_active(*, user: Any) -> list[LegalHold]:
    """The active holds that cover `user` (a hold on one of their tenants, or on them)."""
    ref = subject_ref(user)
    return list(LegalHold.objects.filter(released_at__isnull=True, tenant__in=_tenant_slugs(user))
                .filter(Q(subject="") | Q(subject=ref)))


def legal_hold_place(*, tenant: Any, reason: str, actor: Any, user: Any = None) -> LegalHold:
    """Place a hold on a tenant, or on one user of it; audited `legal_hold.set`."""
    if not isinstance(reason, str) or not reason.strip():
        raise ApplicationError(ErrorCode.VALIDATION, "A legal hold needs a reason.", field="reason")
    slug = getattr(tenant, "slug", tenant)
    with transaction.atomic():
        hold = LegalHold.objects.create(tenant=slug, subject=subject_ref(user) if user is not None else "",
                                        reason=reason.strip(), placed_by=_actor_label(actor))
        audit_append(event="legal_hold.set", actor=actor, tenant=slug, subject=f"hold:{hold.pk}",
                     payload={"hold": hold.pk, "subject": hold.subject, "reason": hold.reason}, data_subject="")
    return hold


def legal_hold_release(*, hold: LegalHold, actor: Any) -> LegalHold:
    """Release a hold; audited `legal_hold.released`."""
    with transaction.atomic():
        if LegalHold.objects.filter(pk=hold.pk, released_at__isnull=True).update(
                released_at=timezone.now(), released_by=_actor_label(actor)) != 1:
            raise ApplicationError(ErrorCode.CONFLICT, "This legal hold is not active.")
        audit_append(event="legal_hold.released", actor=actor, tenant=hold.tenant, subject=f"hold:{hold.pk}",
                     payload={"hold": hold.pk}, data_subject="")
    hold.refresh_from_db()
    return hold


def _actor_label(actor: Any) -> str:
    if actor is None:
        return "system"
    username = getattr(actor, "username", None)
    return f"user:{username}" if username else str(actor)


def subject_erase(*, user: Any, actor: Any = None) -> dict[str, int]:
    """Erase `user` as a data subject (see the module docstring); returns rows removed per eraser.

    Raises ApplicationError(CONFLICT) while a legal hold covers the user. Idempotent.
    """
    ref = subject_ref(user)
    with transaction.atomic():
        holds = legal_holds_active(user=user)
        if holds:
            raise ApplicationError(ErrorCode.CONFLICT, "A legal hold prevents erasing this subject.",
                                   data={"holds": [hold.pk for hold in holds]})
        removed = {name: eraser(user) for name, eraser in _ERASERS.items()}
        _anonymise(user)
        SubjectKey.objects.update_or_create(subject=ref, defaults={"wrapped_key": None,
                                                                   "erased_at": timezone.now()})
        actor_value = user if actor is None or getattr(actor, "pk", None) == user.pk else actor
        audit_append(event="subject.erased", actor=actor_value, tenant=getattr(user, "default_tenant", None),
                     subject=ref, payload={"removed": removed}, data_subject="")
    return removed


def _anonymise(user: Any) -> None:
    user_model = get_user_model()
    fields = {"username": f"erased-{user.pk}", "first_name": "", "last_name": "", "email": "",
              "is_active": False}
    user_model.objects.filter(pk=user.pk).update(**fields)
    for name, value in fields.items():
        setattr(user, name, value)
    user.set_unusable_password()
    user_model.objects.filter(pk=user.pk).update(password=user.password)
