"""Masking of personal data for logs and for responses to people who may not see it whole.

Free text is masked on its normalised form: every decimal digit becomes ASCII (full-width
``１３９…``, other scripts' digits) and a phone or ID number may be written with a separator between
any two of its characters (``139-1234-5678``, ``139 1234 5678``, ``330702 19500101 0025``); the masked
form is written without the separators. A false positive masks a harmless number, which is the safe
side of the trade.
"""

from __future__ import annotations

import re
import unicodedata

_SEP = r"[ \t\u00a0\u3000\-\u2010\u2011\u2012\u2013\u2014\uff0d]?"  # at most one between two digits
_PHONE = re.compile(rf"(?<![0-9])(?:\+?86{_SEP})?1{_SEP}[3-9](?:{_SEP}[0-9]){{9}}(?![0-9])")
_ID_NUMBER = re.compile(rf"(?<![0-9A-Za-z])[0-9](?:{_SEP}[0-9]){{16}}{_SEP}[0-9Xx](?![0-9A-Za-z])")
_NOT_DIGIT = re.compile(r"[^0-9Xx]")
_FULL_WIDTH_X = str.maketrans({"Ｘ": "X", "ｘ": "x"})


def normalise_digits(text: str) -> str:
    """Every Unicode decimal digit as its ASCII digit (and full-width Ｘ as X); the rest unchanged."""
    if text.isascii():
        return text
    return "".join(str(unicodedata.decimal(ch)) if not ch.isascii() and unicodedata.decimal(ch, None) is not None
                   else ch for ch in text).translate(_FULL_WIDTH_X)


def mask_phone(phone: str | None) -> str:
    """13812345678 -> 138****5678; other lengths keep at most the last 4 digits. Separators and
    full-width digits are normalised first (``139-1234-5678`` -> ``139****5678``)."""
    if not phone:
        return ""
    digits = normalise_digits(phone.strip())
    if len(_NOT_DIGIT.sub("", digits)) >= 7:
        digits = _NOT_DIGIT.sub("", digits)
    if len(digits) >= 11:
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits) > 4:
        return "*" * (len(digits) - 4) + digits[-4:]
    return "*" * len(digits)


def mask_id_number(id_number: str | None) -> str:
    """Resident ID numbers keep the first 6 and last 4 characters."""
    if not id_number:
        return ""
    value = normalise_digits(id_number.strip())
    if len(_NOT_DIGIT.sub("", value)) == 18:
        value = _NOT_DIGIT.sub("", value)
    if len(value) <= 10:
        return value[:2] + "*" * max(len(value) - 2, 0)
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


def mask_name(name: str | None) -> str:
    """张三 -> 张*, 欧阳修文 -> 欧阳**: compound surnames keep two characters."""
    if not name:
        return ""
    value = name.strip()
    keep = 2 if value[:2] in _COMPOUND_SURNAMES and len(value) > 2 else 1
    return value[:keep] + "*" * (len(value) - keep)


def _masked_phone(match: re.Match[str]) -> str:
    digits = _NOT_DIGIT.sub("", match.group(0))[-11:]  # without a +86 prefix
    return f"{digits[:3]}****{digits[-4:]}"


def mask_text(text: str) -> str:
    """Mask phone and ID numbers wherever they appear in free text (log messages, stored questions),
    in whatever width or grouping they are written; the result is the normalised text."""
    text = normalise_digits(text)
    text = _ID_NUMBER.sub(lambda m: mask_id_number(_NOT_DIGIT.sub("", m.group(0))), text)
    return _PHONE.sub(_masked_phone, text)


_COMPOUND_SURNAMES = frozenset(
    "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒 夏侯 轩辕 令狐 端木 独孤 南宫 "
    "西门 百里 呼延 澹台 公冶 宗政 濮阳 太叔 申屠 钟离 闻人 万俟 赫连 第五".split()
)
