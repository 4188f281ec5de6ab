"""Small helpers every JSON handler uses: read a JSON object, answer with JSON.

``read_json`` is the parser of the handlers not yet converted to ``bot.endpoints``; it refuses what
would fail later with a 500 instead of a 400: nesting deeper than the parser's recursion limit,
lone surrogates (``"\\ud800"``, which no database or UTF-8 encoder accepts), integers beyond 64 bits
and non-finite numbers. ``dumps`` never fails on a string it is asked to echo back: a lone surrogate
becomes U+FFFD, so the error envelope itself always encodes.
"""

from __future__ import annotations

import json
import math
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pydantic_core
from aiohttp import web
from bson import ObjectId

from bot.errors import ApiError, bad_request

_SURROGATE = re.compile("[\ud800-\udfff]")
_INT64 = 2**63
_ASCII_INTEGER = re.compile(r"[0-9]{1,18}")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (ObjectId, Decimal)):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def without_surrogates(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD, so it encodes as UTF-8."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def dumps(obj: Any) -> str:
    return without_surrogates(json.dumps(obj, ensure_ascii=False, default=_default))


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(data).encode("utf-8"), status=status, headers=headers,
                        content_type="application/json", charset="utf-8")


def error_response(error: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    return json_response(error.body(), status=error.status, headers=headers)


def _storable(value: Any) -> bool:
    """Every number fits MongoDB (64-bit integers, finite doubles); nesting is bounded by the parser."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, int):
        return -_INT64 <= value < _INT64
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_storable(v) for v in value.values())
    if isinstance(value, list):
        return all(_storable(v) for v in value)
    return True


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 with a Chinese message."""
    raw = await request.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("invalid_encoding", "请求内容必须是 UTF-8 编码") from None
    try:
        # pydantic-core's parser: bounded recursion and lone surrogates refused, both as ValueError
        data = pydantic_core.from_json(text, allow_inf_nan=False)
    except ValueError:
        raise bad_request("invalid_json", "请求内容不是有效的 JSON") from None
    if not isinstance(data, dict):
        raise bad_request("invalid_json", "请求内容必须是 JSON 对象")
    if not _storable(data):
        raise bad_request("invalid_json", "请求内容中的数值超出范围")
    return data


def query_int(request: web.Request, name: str, default: int, minimum: int, maximum: int,
              code: str = "invalid_parameter") -> int:
    """An integer query parameter within [minimum, maximum], or a 400 naming it. ASCII digits only:
    ``str.isdigit`` is true for ``²`` and ``①``, which ``int`` then refuses."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _ASCII_INTEGER.fullmatch(raw) or not minimum <= int(raw) <= maximum:
        raise bad_request(code, f"参数 {name} 应为 {minimum} 到 {maximum} 之间的整数", field=name)
    return int(raw)
