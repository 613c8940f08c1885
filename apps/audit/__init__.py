"""Append-only, hash-chained audit records: one per turn, publish, key change, login, export, erasure."""
