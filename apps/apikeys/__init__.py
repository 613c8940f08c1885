"""Partner applications and their API keys (hashed, scoped, expiring, revocable) and the usage ledger."""
