"""AuditRecord: one link of the hash chain. The application only ever inserts these rows.

`seq` orders the chain; `hash` = SHA-256 over the record's canonical fields and `prev_hash`, so editing,
deleting, reordering or inserting a record breaks every later link, and `audit_verify` names the first.
Updates and deletes through the ORM raise; the database-level guard (trigger / privileges) comes with
the audit issue.
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
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

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
