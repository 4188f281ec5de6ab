"""Insured identity numbers: validation, masking and the keyed hash that is all we ever store.

Two kinds of number are accepted (pure functions, no I/O):
- the 18-character resident ID number (居民身份证号码, GB 11643-1999): 6-digit region code, birth
  date YYYYMMDD, 3-digit sequence and a check character (ISO 7064 MOD 11-2, ``X`` for 10);
- a 医保编号 (medical-insurance number) in the format this service defines: 10 to 30 characters
  of upper-case letters and digits that START WITH A LETTER (e.g. ``YB330702000123456``). Starting
  with a letter keeps it disjoint from resident ID numbers, so a mistyped ID number is never
  accepted as a 医保编号. Lower-case input is upper-cased; spaces are removed.

The plain number is never stored, logged or returned: ``identity_hash`` (HMAC-SHA256 with a secret
key, see ``bot.settlements.identity_key``) is what settlements and bindings are matched on, and ``mask`` is what
people see.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date

RESIDENT_ID = "resident_id"
INSURANCE_NUMBER = "insurance_number"

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_RESIDENT_SHAPE = re.compile(r"^[1-9]\d{16}[\dX]$")
_INSURANCE_SHAPE = re.compile(r"^[A-Z][A-Z0-9]{9,29}$")


class InvalidIdNumberError(ValueError):
    """The number is neither a valid resident ID number nor a 医保编号; ``message`` is Chinese."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class IdNumber:
    kind: str  # RESIDENT_ID or INSURANCE_NUMBER
    value: str  # normalised; keep it in memory only

    def __repr__(self) -> str:  # never print the plain number by accident
        return f"IdNumber({self.kind}, {self.masked})"

    @property
    def masked(self) -> str:
        return mask(self.value)


def check_character(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits."""
    total = sum(int(digit) * weight for digit, weight in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def _birth_date_valid(value: str, today: date) -> bool:
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= today


def parse(raw: object, today: date | None = None) -> IdNumber:
    """Normalise and validate; raises ``InvalidIdNumberError`` with a Chinese message."""
    if not isinstance(raw, str):
        raise InvalidIdNumberError("证件号码必须是字符串")
    value = "".join(raw.split()).upper()
    if not value:
        raise InvalidIdNumberError("请填写身份证号码或医保编号")
    if _RESIDENT_SHAPE.match(value):
        if not _birth_date_valid(value, today or date.today()):
            raise InvalidIdNumberError("身份证号码中的出生日期无效")
        if check_character(value[:17]) != value[17]:
            raise InvalidIdNumberError("身份证号码校验位不正确，请核对")
        return IdNumber(RESIDENT_ID, value)
    if _INSURANCE_SHAPE.match(value):
        return IdNumber(INSURANCE_NUMBER, value)
    if value.isdigit() or (value[:-1].isdigit() and value[-1] == "X"):
        raise InvalidIdNumberError("身份证号码应为 18 位（最后一位可为 X）")
    raise InvalidIdNumberError("请填写 18 位身份证号码，或以字母开头的 10 到 30 位医保编号")


def mask(value: str) -> str:
    """110105194912310021 -> 110105********0021; YB330702000123456 -> YB33*********3456."""
    if len(value) == 18 and value[0].isdigit():
        return value[:6] + "*" * 8 + value[-4:]
    return value[:4] + "*" * max(len(value) - 8, 0) + value[-4:]


def identity_hash(key: bytes, number: IdNumber) -> str:
    """The keyed hash both bindings and settlement events are matched on (hex)."""
    return hmac.new(key, f"cn-insured:{number.value}".encode(), hashlib.sha256).hexdigest()


_NAME = re.compile(r"^[\u3400-\u9fffA-Za-z][\u3400-\u9fffA-Za-z·• .]{0,29}$")


def valid_name(raw: object) -> str | None:
    """The insured person's name, whitespace normalised (Chinese, or letters; · for minority names), or None."""
    if not isinstance(raw, str):
        return None
    name = " ".join(raw.split())
    return name if _NAME.match(name) else None


def name_hash(key: bytes, name: str) -> str:
    """The keyed hash of an insured person's name: what a binding's name and a settlement's are compared on."""
    return hmac.new(key, f"cn-insured-name:{name}".encode(), hashlib.sha256).hexdigest()
