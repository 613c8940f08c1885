"""Verify the audit chain: recompute every link in order and name the first bad record and what happened.

The verdict says where (`broken_seq`, and `record_hash` when a record is there) and what (`kind`):

- `missing`: a record is gone (a gap in the sequence, or the chain ends before its head);
- `forged`: a record whose hash the server never sealed (an inserted record, or an edited hash/seal);
- `moved`: a genuine record at another position than the one it was written at (reordered);
- `edited`: a genuine record whose stored fields no longer match its hash;
- `relinked`: a genuine record whose link does not match the record before it;
- `rewritten`: every link holds, but the newest record is not the one the chain head remembers.

The same check runs over the database (`audit_verify`) and over an exported file (apps/audit/export.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from apps.audit.crypto import record_hash, seal_valid
from apps.audit.models import AuditRecord, ChainHead

GENESIS_HASH = "0" * 64
_BRUTE_FORCE_LIMIT = 200_000  # positions tried when locating where a moved record came from


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    broken_seq: int | None = None
    reason: str = ""
    kind: str = ""
    record_hash: str = ""  # the stored hash of the bad record ("" when it is missing)

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain OK: {self.checked} records verified"
        return (f"audit chain BROKEN at record #{self.broken_seq}: {self.kind}: {self.reason} "
                f"({self.checked} checked before it)")


def _origin(record: AuditRecord, positions: dict[str, int], last_seq: int) -> int | None:
    """The position a record was written at, when its stored fields match its hash there."""
    candidates = []
    if record.prev_hash == GENESIS_HASH:
        candidates.append(1)
    elif record.prev_hash in positions:
        candidates.append(positions[record.prev_hash] + 1)
    candidates += range(1, min(last_seq + 2, _BRUTE_FORCE_LIMIT))
    probe = copy.copy(record)
    for seq in candidates:
        if seq == record.seq:
            continue
        probe.seq = seq
        if record_hash(probe) == record.hash:
            return seq
    return None


def verify_records(records: Iterable[AuditRecord], *, positions: Callable[[], dict[str, int]],
                   head: tuple[int, str] | None = None, check_seals: bool = True) -> VerifyResult:
    """The first broken record of `records` (in stored order); `positions()` maps hash -> seq on demand."""
    prev_hash, expected, checked = GENESIS_HASH, 1, 0

    def broken(seq: int, kind: str, reason: str, record: AuditRecord | None = None) -> VerifyResult:
        return VerifyResult(False, checked, seq, reason, kind, record.hash if record is not None else "")

    for record in records:
        if record.seq > expected:
            return broken(expected, "missing", f"record #{expected} is missing (the next one is #{record.seq})")
        if record.seq < expected:
            return broken(record.seq, "moved", f"record #{record.seq} appears again after #{expected - 1}", record)
        if check_seals and not seal_valid(record):
            return broken(record.seq, "forged", "its hash was never sealed by this server (inserted or forged)",
                          record)
        if record_hash(record) != record.hash:
            index = positions()
            origin = _origin(record, index, max(index.values(), default=record.seq))
            if origin is not None:
                return broken(record.seq, "moved", f"this record was written as #{origin}", record)
            return broken(record.seq, "edited", "its content does not match its hash", record)
        if record.prev_hash != prev_hash:
            return broken(record.seq, "relinked", "prev_hash does not match the previous record", record)
        if head is not None and record.seq == head[0] and record.hash != head[1]:
            return broken(record.seq, "rewritten", "this is not the record the chain head remembers", record)
        prev_hash, expected, checked = record.hash, expected + 1, checked + 1
    if head is not None and checked < head[0]:
        return broken(checked + 1, "missing",
                      f"the chain ends at #{checked} but its head is #{head[0]} (newest records deleted)")
    return VerifyResult(True, checked)


def audit_verify(*, chunk: int = 2000) -> VerifyResult:
    """Verify the stored chain against its hashes, seals and head; name the first broken record."""
    head_row = ChainHead.objects.filter(id=1).values_list("seq", "hash").first()  # read first: appends go on
    records = AuditRecord.objects.order_by("seq").iterator(chunk_size=chunk)

    def positions() -> dict[str, int]:
        return dict(AuditRecord.objects.values_list("hash", "seq"))

    return verify_records(records, positions=positions, head=head_row)
