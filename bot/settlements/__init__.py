"""Settlements: pure rules (status order, amounts, decisions, the event model), the store fed by the
signed webhook, insured identities bound to residents (keyed hashes and masked forms of ID numbers
and names) and their verification (face verification answers, counter codes, the development
verifier), family grants, attempt limits, the access log of staff reads, the start-up migration of
pre-verification bindings, and demo data."""
