"""Policy FAQ over HTTP: ask, browse, search, and the staff list of knowledge gaps."""

from __future__ import annotations

import hmac

from aiohttp import web

import knowledge
from bot.errors import bad_request, not_found
from bot.keys import DB, SETTINGS
from bot.openapi import BEARER, error_response, json_body, ref
from bot.web import json_response, query_int, read_json
from handlers.auth import bearer_token
from handlers.staff_auth import current_staff
from knowledge.gaps import count_gaps

routes = web.RouteTableDef()

MAX_GAPS_PAGE = 200


def _question(value: object, *, field: str = "question") -> str:
    if not isinstance(value, str):
        raise bad_request("invalid_question", "请填写问题（字符串）", field=field)
    if not value.strip():
        raise bad_request("empty_question", "问题不能为空", field=field)
    if len(value.strip()) > knowledge.MAX_QUESTION_CHARS:
        raise bad_request("question_too_long", f"问题不能超过 {knowledge.MAX_QUESTION_CHARS} 个字", field=field)
    return value


@routes.post("/api/v1/faq/ask")
async def ask(request: web.Request) -> web.Response:
    body = await read_json(request)
    question = _question(body.get("question"))
    result = knowledge.answer(question)
    await knowledge.record_gap(request.app[DB], question, result)
    return json_response(result.to_dict())


@routes.get("/api/v1/faq/categories")
async def categories(request: web.Request) -> web.Response:
    return json_response({"categories": knowledge.current_engine().corpus.categories()})


@routes.get("/api/v1/faq/search")
async def search(request: web.Request) -> web.Response:
    query = _question(request.query.get("q"), field="q")
    return json_response({"results": knowledge.search(query, 10)})


@routes.get(r"/api/v1/faq/{faq_id:[A-Za-z0-9_.-]{1,64}}")
async def get_entry(request: web.Request) -> web.Response:
    found = knowledge.entry(request.match_info["faq_id"])
    if found is None:
        raise not_found("没有找到该问题", code="faq_not_found")
    return json_response(found.to_dict())


async def require_gap_reader(request: web.Request) -> None:
    """The configured ADMIN_TOKEN as a bearer token, or a signed-in staff member with role admin."""
    admin_token = request.app[SETTINGS].admin_token
    token = bearer_token(request)
    if admin_token and token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return
    await current_staff(request, "admin")


@routes.get("/api/v1/staff/faq/gaps")
async def gaps(request: web.Request) -> web.Response:
    await require_gap_reader(request)
    limit = query_int(request, "limit", 50, 0, MAX_GAPS_PAGE) or 50
    skip = query_int(request, "skip", 0, 0, 1_000_000)
    db = request.app[DB]
    return json_response({"gaps": await knowledge.list_gaps(db, limit, skip), "total": await count_gaps(db)})


_SUGGESTION = {"type": "object", "required": ["faq_id", "question"],
               "properties": {"faq_id": {"type": "string", "example": "settle-006"},
                              "question": {"type": "string", "example": "异地就医备案有哪些办理渠道？"}}}

OPENAPI = {
    "paths": {
        "/api/v1/faq/ask": {
            "post": {
                "summary": "政策问答：回答居民的问题",
                "description": "置信度高时直接回答（answered=true，suggestions 为相关问题）；不确定时返回 3 个"
                               "“您是不是想问”的候选问题；无法回答时拒答并给出兜底提示，并记录为知识缺口。"
                               "非问题输入（表情、问候语）返回 answered=false 与 reason。",
                "tags": ["faq"],
                "requestBody": json_body({"type": "object", "required": ["question"], "properties": {
                    "question": {"type": "string", "maxLength": 500, "example": "异地就医备案怎么办理"}}}),
                "responses": {
                    "200": json_body(ref("FaqAnswer"), "回答、候选问题或拒答"),
                    "400": error_response("问题缺失、不是字符串、为空、超过 500 字，或请求不是 UTF-8 JSON"),
                },
            }
        },
        "/api/v1/faq/categories": {
            "get": {
                "summary": "问答分类及每类条目数",
                "tags": ["faq"],
                "responses": {"200": json_body({"type": "object", "properties": {"categories": {
                    "type": "array", "items": {"type": "object", "properties": {
                        "category": {"type": "string", "example": "结算"},
                        "count": {"type": "integer"}}}}}}, "分类列表")},
            }
        },
        "/api/v1/faq/search": {
            "get": {
                "summary": "搜索问答（搜索框用，最多 10 条）",
                "tags": ["faq"],
                "parameters": [{"name": "q", "in": "query", "required": True,
                                "schema": {"type": "string", "maxLength": 500}}],
                "responses": {
                    "200": json_body({"type": "object", "properties": {"results": {"type": "array", "items": {
                        "allOf": [_SUGGESTION, {"type": "object", "properties": {
                            "category": {"type": "string"}, "score": {"type": "number"}}}]}}}}, "搜索结果"),
                    "400": error_response("缺少搜索内容或超过 500 字"),
                },
            }
        },
        "/api/v1/faq/{faq_id}": {
            "get": {
                "summary": "按编号查看一条问答",
                "tags": ["faq"],
                "parameters": [{"name": "faq_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": json_body(ref("FaqEntry"), "问答条目"),
                              "404": error_response("没有该问答")},
            }
        },
        "/api/v1/staff/faq/gaps": {
            "get": {
                "summary": "知识缺口：拒答或不确定的问题，按出现次数从多到少",
                "description": "需要管理员：Authorization: Bearer <ADMIN_TOKEN>，或角色为 admin 的工作人员登录令牌。",
                "tags": ["faq", "staff"],
                "security": BEARER,
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                "maximum": MAX_GAPS_PAGE, "default": 50}},
                    {"name": "skip", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
                ],
                "responses": {
                    "200": json_body({"type": "object", "properties": {
                        "gaps": {"type": "array", "items": ref("FaqGap")}, "total": {"type": "integer"}}},
                        "知识缺口列表"),
                    "400": error_response("分页参数无效"),
                    "401": error_response("未登录或令牌无效"),
                    "403": error_response("不是管理员"),
                },
            }
        },
    },
    "schemas": {
        "FaqSuggestion": _SUGGESTION,
        "FaqAnswer": {
            "type": "object",
            "required": ["answered", "faq_id", "question", "answer", "score", "suggestions"],
            "properties": {
                "answered": {"type": "boolean", "description": "是否直接回答"},
                "faq_id": {"type": "string", "nullable": True},
                "question": {"type": "string", "nullable": True, "description": "匹配到的标准问题"},
                "answer": {"type": "string", "nullable": True},
                "score": {"type": "number", "minimum": 0, "maximum": 1, "description": "匹配置信度"},
                "suggestions": {"type": "array", "items": ref("FaqSuggestion"),
                                "description": "已回答时为相关问题；不确定时为“您是不是想问”的 3 个候选；拒答时为空"},
                "reason": {"type": "string", "nullable": True,
                           "enum": ["empty", "too_long", "no_content", "greeting", "unavailable", None],
                           "description": "输入不是问题时的原因"},
                "message": {"type": "string", "nullable": True,
                            "description": "回答之外要显示的提示（兜底、候选引导语）"},
            },
        },
        "FaqEntry": {
            "type": "object",
            "properties": {
                "id": {"type": "string"}, "category": {"type": "string"}, "question": {"type": "string"},
                "answer": {"type": "string"}, "paraphrases": {"type": "array", "items": {"type": "string"}},
                "keywords": {"type": "array", "items": {"type": "string"}}, "source": {"type": "string"},
                "updated": {"type": "string", "format": "date"},
            },
        },
        "FaqGap": {
            "type": "object",
            "properties": {
                "key": {"type": "string", "description": "规范化后的问题（手机号、身份证号已脱敏）"},
                "question": {"type": "string", "description": "最近一次的原始问法（已脱敏）"},
                "count": {"type": "integer"},
                "first_seen": {"type": "string", "format": "date-time"},
                "last_seen": {"type": "string", "format": "date-time"},
                "decision": {"type": "string", "enum": ["suggest", "decline"]},
                "score": {"type": "number"},
                "suggestions": {"type": "array", "items": ref("FaqSuggestion")},
            },
        },
    },
}
