"""Settlements: pure rules (status order, amounts, decisions), the store fed by the signed webhook,
insured identities bound to residents (keyed hashes and masked forms of ID numbers) and demo data."""
