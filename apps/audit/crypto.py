"""The audit chain's keys and ciphers: record hashes and seals, per-subject payload encryption.

- `record_hash`: SHA-256 over a record's canonical fields (public: an export verifies without secrets).
- `record_seal`: HMAC-SHA256 of the hash under the server's audit key; only the server can issue one.
- Payloads holding a subject's personal data are sealed with AES-256-GCM under a random per-subject key
  (`SubjectKey`), itself wrapped under a key-encryption key; the subject reference is the AAD, so a
  ciphertext moved to another subject fails to open. Destroying the wrapped key shreds every payload.

The server keys come from `settings.VERITY_AUDIT_KEY` when set, else are derived from SECRET_KEY with
HKDF (distinct `info` per use), so rotating them is a separate, deliberate act.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from apps.audit.models import AuditRecord

NONCE_BYTES = 12


class PayloadUnavailableError(Exception):
    """The payload's subject key was destroyed (erased), or the ciphertext does not open."""


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def payload_digest(payload: Any) -> str:
    return hashlib.sha256(canonical(payload)).hexdigest()


def _server_key(purpose: bytes) -> bytes:
    secret = getattr(settings, "VERITY_AUDIT_KEY", "") or settings.SECRET_KEY
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"verity-audit", info=purpose).derive(secret.encode())


def record_fields(record: AuditRecord) -> dict[str, Any]:
    """The hashed fields. The subject fields join only when set, so records written before them verify."""
    fields: dict[str, Any] = {
        "seq": record.seq,
        "created_at": record.created_at.isoformat(),
        "event": record.event,
        "actor": record.actor,
        "tenant": record.tenant,
        "subject": record.subject,
        "payload_digest": record.payload_digest,
        "verdicts": record.verdicts,
        "model_version": record.model_version,
        "pack_version": record.pack_version,
        "prev_hash": record.prev_hash,
    }
    if record.data_subject or record.payload_sealed:
        fields["data_subject"] = record.data_subject
        fields["payload_sealed"] = record.payload_sealed
    return fields


def record_hash(record: AuditRecord) -> str:
    """The link hash over every stored field except the hash and the seal."""
    return hashlib.sha256(canonical(record_fields(record))).hexdigest()


def record_seal(record_hash_hex: str) -> str:
    return hmac.new(_server_key(b"record seal"), record_hash_hex.encode(), hashlib.sha256).hexdigest()


def seal_valid(record: AuditRecord) -> bool:
    return hmac.compare_digest(record.seal or "", record_seal(record.hash or ""))


# -- per-subject keys --------------------------------------------------------------------------------

def new_subject_key() -> tuple[bytes, bytes]:
    """A fresh subject key and its wrapped form (nonce + AES-GCM under the key-encryption key)."""
    key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    return key, nonce + AESGCM(_server_key(b"subject key wrap")).encrypt(nonce, key, b"subject-key")


def unwrap_subject_key(wrapped: bytes) -> bytes:
    wrapped = bytes(wrapped)
    return AESGCM(_server_key(b"subject key wrap")).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:],
                                                            b"subject-key")


def payload_encrypt(key: bytes, subject: str, payload: Any) -> str:
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(nonce, canonical(payload), subject.encode())
    return base64.b64encode(nonce + ciphertext).decode("ascii")


def payload_decrypt(key: bytes, subject: str, sealed: str) -> Any:
    raw = base64.b64decode(sealed)
    try:
        plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], subject.encode())
    except Exception as exc:  # InvalidTag: wrong key, wrong subject or altered ciphertext
        raise PayloadUnavailableError("the sealed payload does not open under its subject's key") from exc
    return json.loads(plain)


def keyed_digest(key: bytes, payload: Any) -> str:
    """The digest of a sealed payload: keyed, so after erasure it cannot confirm a guessed text."""
    digest_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"verity-audit", info=b"payload digest").derive(key)
    return hmac.new(digest_key, canonical(payload), hashlib.sha256).hexdigest()
