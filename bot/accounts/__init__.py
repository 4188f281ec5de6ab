"""Staff accounts and sessions (resident and staff bearer tokens)."""
