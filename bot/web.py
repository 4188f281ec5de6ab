"""Small helpers every JSON handler uses: read a JSON object, answer with JSON."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web
from bson import ObjectId

from bot.errors import ApiError, bad_request


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (ObjectId, Decimal)):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=_default)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


def error_response(error: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    return json_response(error.body(), status=error.status, headers=headers)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 with a Chinese message."""
    raw = await request.read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise bad_request("invalid_encoding", "请求内容必须是 UTF-8 编码") from None
    except ValueError:
        raise bad_request("invalid_json", "请求内容不是有效的 JSON") from None
    if not isinstance(data, dict):
        raise bad_request("invalid_json", "请求内容必须是 JSON 对象")
    return data


def query_int(request: web.Request, name: str, default: int, minimum: int, maximum: int,
              code: str = "invalid_parameter") -> int:
    """An integer query parameter within [minimum, maximum], or a 400 naming it."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise bad_request(code, f"参数 {name} 应为 {minimum} 到 {maximum} 之间的整数", field=name)
    return int(raw)
