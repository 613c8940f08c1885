"""The audit chain's tables: records (append-only), the chain head, subject keys and legal holds.

`AuditRecord` is one link: `hash` = SHA-256 over the record's canonical fields and `prev_hash`, and
`seal` = HMAC-SHA256 of that hash under the server's audit key, so anyone holding an export can check
the links, and only the server could have issued a record (a forged insert fails its seal). Personal
content rides in `payload_sealed`, AES-GCM encrypted under the key of its `data_subject`; the chain hashes
the ciphertext, so destroying the subject's key (erasure) leaves the chain intact.

`ChainHead` remembers the last record appended (only ever moves forward), so deleting the newest
records is found too. `SubjectKey` holds the wrapped per-subject keys in a table of their own: erasure
changes keys, never audit rows. On PostgreSQL a trigger refuses UPDATE and DELETE of audit rows and any
move backwards of the head (migration 0002); the ORM refuses them everywhere.
"""

from __future__ import annotations

from django.db import models


class AppendOnlyError(RuntimeError):
    """Raised when code tries to change or remove an audit record."""


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("Audit records are append-only; update() is refused.")

    def delete(self):
        raise AppendOnlyError("Audit records are append-only; delete() is refused.")


class AuditRecord(models.Model):
    seq = models.BigIntegerField(primary_key=True)
    created_at = models.DateTimeField()
    event = models.CharField(max_length=64, db_index=True)
    actor = models.CharField(max_length=128)
    tenant = models.CharField(max_length=64, blank=True, db_index=True)
    subject = models.CharField(max_length=128, blank=True, db_index=True)
    payload_digest = models.CharField(max_length=64)
    verdicts = models.JSONField(default=list)
    model_version = models.CharField(max_length=200, blank=True)
    pack_version = models.CharField(max_length=100, blank=True)
    # The person whose personal data the payload holds ("subject:<user pk>"), and the payload itself,
    # encrypted under that person's key (base64 of nonce + AES-GCM ciphertext); both empty otherwise.
    data_subject = models.CharField(max_length=64, blank=True, db_index=True)
    payload_sealed = models.TextField(blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    seal = models.CharField(max_length=64, blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ("seq",)

    def __str__(self) -> str:
        return f"#{self.seq} {self.event} {self.subject}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise AppendOnlyError(f"Audit record {self.seq} is append-only; it cannot be changed.")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"Audit record {self.seq} is append-only; it cannot be deleted.")


class ChainHead(models.Model):
    """One row (id=1): the newest record's sequence number and hash, written with every append."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"audit head #{self.seq}"


class SubjectKey(models.Model):
    """A data subject's payload key, wrapped (AES-GCM) under the server's key-encryption key.

    Erasure sets `wrapped_key` to NULL and `erased_at`: every payload sealed under it is unreadable
    from then on. The row stays so the erasure itself is visible and no new key is silently created.
    """

    subject = models.CharField(max_length=64, unique=True)
    wrapped_key = models.BinaryField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)
    erased_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"key of {self.subject}{' (erased)' if self.erased_at else ''}"


class LegalHold(models.Model):
    """A legal hold on a tenant (all its subjects) or one subject of it; erasure refuses while active."""

    tenant = models.CharField(max_length=64, db_index=True)
    subject = models.CharField(max_length=64, blank=True)  # "" = every subject of the tenant
    reason = models.TextField()
    placed_by = models.CharField(max_length=128)
    placed_at = models.DateTimeField(auto_now_add=True)
    released_by = models.CharField(max_length=128, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-placed_at",)

    def __str__(self) -> str:
        return f"hold {self.tenant}/{self.subject or '*'}{' (released)' if self.released_at else ''}"
