"""schemathesis hooks for tests/test_api_fuzz.py (loaded through SCHEMATHESIS_HOOKS): generators for the
string formats our document names that JSON Schema cannot express."""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def _with_check_character(first17: str) -> str:
    return first17 + _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


# A resident ID number (GB 11643) with a correct check character, or "" (the field is optional).
schemathesis.openapi.format("cn-resident-id", st.one_of(
    st.just(""), st.text("0123456789", min_size=17, max_size=17).map(_with_check_character)))
