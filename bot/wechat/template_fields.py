"""Value rules of subscribe-message template fields (订阅消息模板参数), checked before sending.

A template key's type is its name without the trailing number (``thing1`` → ``thing``). WeChat
rejects a value that breaks its type's rule with 47003; we check first so the caller learns which
field is wrong without spending an API call. ``clip`` shortens free text to fit a type.
Rules from WeChat's subscribe-message documentation (订阅消息参数值内容限制说明).
"""

from __future__ import annotations

import re

_DATE = r"\d{4}(?:年\d{1,2}月\d{1,2}日|-\d{1,2}-\d{1,2}|/\d{1,2}/\d{1,2})"
_TIME = r"\d{1,2}:\d{2}(?::\d{2})?"
_DATE_TIME = rf"{_DATE}(?:\s*{_TIME})?"
_HAN = r"[\u4e00-\u9fff·]"


def _ranged(one: str) -> re.Pattern[str]:
    return re.compile(rf"^{one}(?:\s*~\s*{one})?$")


# type -> (max length or None, pattern or None, Chinese description of the rule)
RULES: dict[str, tuple[int | None, re.Pattern[str] | None, str]] = {
    "thing": (20, None, "20 个以内字符"),
    "number": (32, re.compile(r"^[+-]?\d+(?:\.\d+)?$"), "32 位以内数字，可带小数"),
    "letter": (32, re.compile(r"^[A-Za-z]+$"), "32 位以内字母"),
    "symbol": (5, re.compile(r"^[^\w\s]+$"), "5 位以内符号"),
    "character_string": (32, re.compile(r"^[\x21-\x7e]+$"), "32 位以内数字、字母或符号"),
    "time": (None, _ranged(rf"(?:{_DATE}\s*)?{_TIME}"), "24 小时制时间，如 15:01 或 2019年10月1日 15:01"),
    "date": (None, _ranged(_DATE_TIME), "年月日，如 2019年10月1日 或 2019年10月1日 15:01"),
    "amount": (None, re.compile(r"^[¥$￥€£]?\d{1,10}(?:\.\d{1,2})?元?$"),
               "币种符号 + 10 位以内数字，可带小数，结尾可带“元”"),
    "phone_number": (17, re.compile(r"^[\d+\-() ]+$"), "17 位以内数字或符号"),
    "car_number": (8, None, "8 位以内车牌号"),
    "name": (None, None, "10 个以内汉字或 20 个以内字母"),
    "phrase": (5, re.compile(rf"^{_HAN}+$"), "5 个以内汉字"),
}


def field_type(key: str) -> str:
    return key.rstrip("0123456789")


def _name_ok(value: str) -> bool:
    if re.fullmatch(rf"{_HAN}+", value):
        return len(value) <= 10
    return len(value) <= 20 and not re.search(_HAN, value)


def problems(data: dict[str, str]) -> list[str]:
    """Every rule the values break, as ``"thing1: 20 个以内字符"``; empty when all fit."""
    found: list[str] = []
    for key, value in data.items():
        kind = field_type(key)
        if not isinstance(value, str) or not value.strip():
            found.append(f"{key}: 不能为空")
            continue
        rule = RULES.get(kind)
        if rule is None:
            continue  # a type we do not know: let WeChat judge it
        max_length, pattern, description = rule
        ok = _name_ok(value) if kind == "name" else (
            (max_length is None or len(value) <= max_length) and (pattern is None or pattern.match(value))
        )
        if not ok:
            found.append(f"{key}: {description}")
    return found


def clip(kind: str, text: str) -> str:
    """Shorten free text to fit ``thing``/``name``/``phrase``/… (ending with … when cut)."""
    limit = {"name": 10}.get(kind) or (RULES.get(kind, (None,))[0])
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"
