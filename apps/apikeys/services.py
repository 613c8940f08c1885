"""API key services: issue (the plaintext is returned once), revoke (effective on the next request),
authenticate (constant-time, one indexed lookup), and record token usage in the ledger.

The stored `secret_hash` is HMAC-SHA256(pepper, key). The pepper is `settings.VERITY_APIKEY_PEPPER` when
set, else derived from SECRET_KEY, so a leaked database alone cannot be used to test guessed keys.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone

from apps.accounts.models import Tenant
from apps.apikeys.models import ENDPOINT_SCOPES, ApiKey, PartnerApp, UsageRecord
from apps.audit.services import audit_append
from apps.core.errors import ApplicationError, ErrorCode

KEY_PREFIX = "vk"
_KEY_RE = re.compile(r"^vk_([a-z0-9]{12})_([A-Za-z0-9_-]{20,100})$")
_SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
LAST_USED_RESOLUTION = timedelta(seconds=60)  # write last_used_at at most once a minute per key


def _pepper() -> bytes:
    configured = getattr(settings, "VERITY_APIKEY_PEPPER", "") or ""
    if configured:
        return configured.encode()
    return hashlib.sha256(b"verity-apikey-pepper:" + settings.SECRET_KEY.encode()).digest()


def key_hash(raw_key: str) -> str:
    return hmac.new(_pepper(), raw_key.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str  # shown once; never stored


def _clean_list(values: Iterable[str] | None, *, field: str, allowed: Iterable[str] | None = None) -> list[str]:
    out: list[str] = []
    for value in values or ():
        value = str(value).strip().lower()
        if not value:
            continue
        if not _SLUG_RE.match(value):
            raise ApplicationError(ErrorCode.VALIDATION, f"{value!r} is not a valid {field} name.", field=field)
        if allowed is not None and value not in allowed:
            raise ApplicationError(ErrorCode.VALIDATION, f"Unknown {field} {value!r} (known: "
                                   f"{', '.join(allowed)}).", field=field)
        if value not in out:
            out.append(value)
    return out


def api_key_create(*, tenant: Tenant, name: str, app_name: str | None = None,
                   domains: Iterable[str] | None = None, endpoints: Iterable[str] | None = None,
                   expires_at: datetime | None = None, requests_per_minute: int = 60,
                   tokens_per_minute: int = 100_000, actor: Any = None) -> IssuedKey:
    """Issue a key for the partner app `app_name` (default: `name`) of `tenant`; audited as apikey.issued."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ApplicationError(ErrorCode.VALIDATION, "A key name of 1-100 characters is required.", field="name")
    if not tenant.is_active:
        raise ApplicationError(ErrorCode.VALIDATION, f"Tenant {tenant.slug!r} is not active.", field="tenant")
    for label, value in (("requests_per_minute", requests_per_minute), ("tokens_per_minute", tokens_per_minute)):
        if not isinstance(value, int) or value < 1:
            raise ApplicationError(ErrorCode.VALIDATION, f"{label} must be a positive integer.", field=label)
    if expires_at is not None and expires_at <= timezone.now():
        raise ApplicationError(ErrorCode.VALIDATION, "expires_at must be in the future.", field="expires_at")
    domain_list = _clean_list(domains, field="domain")
    endpoint_list = _clean_list(endpoints, field="endpoint", allowed=ENDPOINT_SCOPES)
    with transaction.atomic():
        app, _ = PartnerApp.objects.get_or_create(tenant=tenant, name=(app_name or name).strip()[:100])
        for _attempt in range(5):  # a 48-bit prefix collides essentially never; retry anyway
            prefix = secrets.token_hex(6)
            plaintext = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
            try:
                with transaction.atomic():
                    api_key = ApiKey.objects.create(
                        partner_app=app, tenant=tenant, name=name, prefix=prefix, secret_hash=key_hash(plaintext),
                        allowed_domains=domain_list, allowed_endpoints=endpoint_list,
                        requests_per_minute=requests_per_minute, tokens_per_minute=tokens_per_minute,
                        expires_at=expires_at, created_by=_actor_label(actor),
                    )
                break
            except IntegrityError:
                continue
        else:  # pragma: no cover - five 48-bit collisions in a row
            raise ApplicationError(ErrorCode.INTERNAL, "Could not allocate a unique key prefix.")
        audit_append(event="apikey.issued", actor=actor, tenant=tenant, subject=f"apikey:{prefix}",
                     payload={"prefix": prefix, "name": name, "app": app.name, "domains": domain_list,
                              "endpoints": endpoint_list, "expires_at": expires_at,
                              "requests_per_minute": requests_per_minute, "tokens_per_minute": tokens_per_minute})
    return IssuedKey(api_key=api_key, plaintext=plaintext)


def api_key_revoke(*, prefix: str, actor: Any = None, tenant: Tenant | None = None) -> ApiKey:
    """Revoke the key with `prefix` (optionally only within `tenant`); the next request with it gets 401."""
    prefix = (prefix or "").strip()
    if prefix.startswith(f"{KEY_PREFIX}_"):  # accept a pasted full key or `vk_<prefix>` too
        prefix = prefix.split("_")[1]
    with transaction.atomic():
        keys = ApiKey.objects.select_for_update().filter(prefix=prefix)
        if tenant is not None:
            keys = keys.filter(tenant=tenant)
        api_key = keys.select_related("tenant").first()
        if api_key is None:
            raise ApplicationError(ErrorCode.NOT_FOUND, f"No API key with prefix {prefix!r}.", field="prefix")
        if api_key.revoked_at is None:
            api_key.revoked_at = timezone.now()
            api_key.save(update_fields=["revoked_at", "updated_at"])
            audit_append(event="apikey.revoked", actor=actor, tenant=api_key.tenant,
                         subject=f"apikey:{api_key.prefix}", payload={"prefix": api_key.prefix,
                                                                      "revoked_at": api_key.revoked_at})
    return api_key


_INVALID = "Incorrect API key provided. Check the key, or issue a new one."


def api_key_authenticate(*, raw_key: str) -> ApiKey:
    """The usable key matching `raw_key`, or ApplicationError(INVALID_API_KEY) with the reason.

    Malformed keys are refused before the database; a well-formed unknown prefix is one indexed miss;
    the secret is compared in constant time. Revocation and expiry are read on every request.
    """
    match = _KEY_RE.match(raw_key or "")
    if match is None:
        raise ApplicationError(ErrorCode.INVALID_API_KEY, _INVALID)
    api_key = (ApiKey.objects.select_related("tenant", "partner_app").filter(prefix=match.group(1)).first())
    if api_key is None or not hmac.compare_digest(api_key.secret_hash, key_hash(raw_key)):
        raise ApplicationError(ErrorCode.INVALID_API_KEY, _INVALID)
    if api_key.revoked_at is not None:
        raise ApplicationError(ErrorCode.INVALID_API_KEY, "This API key has been revoked.")
    now = timezone.now()
    if api_key.expires_at is not None and api_key.expires_at <= now:
        raise ApplicationError(ErrorCode.INVALID_API_KEY, "This API key has expired.")
    if not api_key.tenant.is_active or not api_key.partner_app.is_active:
        raise ApplicationError(ErrorCode.INVALID_API_KEY, "This API key's organisation or app is disabled.")
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


def usage_record(*, api_key: ApiKey, reply_id: Any, model: str, prompt_tokens: int,
                 completion_tokens: int) -> bool:
    """Add a generation to the ledger once (a retried request for the same reply is not billed twice).

    One statement in autocommit, `INSERT ... ON CONFLICT (reply_id) DO NOTHING`: the unique reply id
    decides, with no read first and no transaction around it (the get_or_create it replaces cost four
    round trips per completion, bulk_create's wrapping transaction three). PostgreSQL and SQLite both
    speak this form. Returns whether this call added the row.
    """
    connection = connections[router.db_for_write(UsageRecord)]
    row = {"api_key_id": api_key.pk, "tenant_id": api_key.tenant_id, "reply_id": uuid.UUID(str(reply_id)),
           "model": model[:64], "prompt_tokens": max(0, int(prompt_tokens or 0)),
           "completion_tokens": max(0, int(completion_tokens or 0)), "created_at": timezone.now()}
    fields = [UsageRecord._meta.get_field(name) for name in row]
    quote = connection.ops.quote_name
    sql = (f"INSERT INTO {quote(UsageRecord._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))}) "
           f"ON CONFLICT ({quote(UsageRecord._meta.get_field('reply_id').column)}) DO NOTHING")
    with connection.cursor() as cursor:
        cursor.execute(sql, [f.get_db_prep_save(row[f.attname], connection) for f in fields])
        return cursor.rowcount == 1


def _actor_label(actor: Any) -> str:
    if actor is None:
        return "system"
    return str(getattr(actor, "username", None) or actor)[:128]
