"""Policy FAQ over HTTP: ask, browse, search, and the staff list of knowledge gaps. Each endpoint is one
``bot.endpoints`` declaration: its models validate the request and document it."""

from __future__ import annotations

import hmac
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

import knowledge
from bot.endpoints import Api, Body, Query, QueryInt
from bot.errors import bad_request, not_found
from bot.keys import DB, SETTINGS
from handlers.auth import bearer_token
from handlers.staff_auth import current_staff
from knowledge.gaps import count_gaps

api = Api("faq")
routes = api.routes

MAX_GAPS_PAGE = 200
# Static paths under /api/v1/faq/ that {faq_id} must not swallow: a GET on /faq/ask is a 405, not a 404
# of an entry called "ask" (aiohttp tries the dynamic resource after the POST-only static one).
_NOT_ENTRIES = {"ask": ("POST",)}


def _question(value: object, *, field: str = "question") -> str:
    if not isinstance(value, str):
        raise bad_request("invalid_question", "请填写问题（字符串）", field=field)
    if not value.strip():
        raise bad_request("empty_question", "问题不能为空", field=field)
    if len(value.strip()) > knowledge.MAX_QUESTION_CHARS:
        raise bad_request("question_too_long", f"问题不能超过 {knowledge.MAX_QUESTION_CHARS} 个字", field=field)
    return value


class AskIn(Body):
    question: str = Field(title="问题", examples=["异地就医备案怎么办理"],
                          json_schema_extra={"maxLength": knowledge.MAX_QUESTION_CHARS})


class FaqSuggestion(BaseModel):
    faq_id: str = Field(examples=["settle-006"])
    question: str = Field(examples=["异地就医备案有哪些办理渠道？"])


class FaqAnswer(BaseModel):
    """一次问答的回复。kind 说明回复的类型：

    - answer：直接回答（faq_id、question、answer 为匹配的条目）；suggestions 为相关问题，message 为“您可能还想问：”时
      它们是与答案相近、也可能是居民想问的条目；
    - clarify：不能确定，suggestions 为“您是不是想问”的 3 个候选，message 为引导语；
    - refer：属于其他部门的业务（养老保险、失业、工伤、社保卡 → 12333 人社；公积金 → 12329），message 为转介说明
      （热线与渠道）；不记为知识缺口；
    - decline：答不上来，message 为兜底提示（换个说法、转人工、12393），记为知识缺口；输入不是问题（空、表情、问候语、
      过长）时也是 decline，并给出 reason。
    """

    kind: Literal["answer", "clarify", "refer", "decline"]
    confidence: float = Field(ge=0, le=1, description="校准后的概率：第一个条目（答案或第一个候选）正是居民所问的把握")
    answered: bool = Field(description="是否直接回答（kind 为 answer），为兼容旧客户端保留")
    faq_id: str | None
    question: str | None = Field(description="匹配到的标准问题")
    answer: str | None
    score: float = Field(ge=0, le=1, description="检索得分（未校准，诊断用）")
    suggestions: list[FaqSuggestion] = Field(
        description="answer：相关问题或“您可能还想问”；clarify：“您是不是想问”的候选；refer、decline：空")
    reason: Literal["empty", "too_long", "no_content", "greeting", "unavailable", "refer"] | None = Field(
        description="输入不是问题时的原因；refer 表示已转介其他部门")
    message: str | None = Field(description="回答之外要显示的文字：引导语、转介说明或兜底提示")


class FaqEntry(BaseModel):
    id: str
    category: str
    question: str
    answer: str
    paraphrases: list[str]
    keywords: list[str]
    source: str
    updated: str = Field(description="YYYY-MM-DD")


class Category(BaseModel):
    category: str = Field(examples=["结算"])
    count: int


class Categories(BaseModel):
    categories: list[Category]


class SearchIn(Query):
    q: str = Field(min_length=1, max_length=knowledge.MAX_QUESTION_CHARS, pattern=r"\S",
                   description="搜索内容（最多 500 字，不能只有空白）")


class SearchHit(FaqSuggestion):
    category: str
    score: float


class SearchResults(BaseModel):
    results: list[SearchHit]


class GapsIn(Query):
    limit: QueryInt = Field(50, ge=1, le=MAX_GAPS_PAGE)
    skip: QueryInt = Field(0, ge=0, le=1_000_000)


class FaqGap(BaseModel):
    key: str = Field(description="规范化后的问题（手机号、身份证号已脱敏）")
    question: str = Field(description="最近一次的原始问法（已脱敏）")
    count: int
    first_seen: str = Field(description="date-time")
    last_seen: str = Field(description="date-time")
    decision: Literal["suggest", "decline"]
    score: float
    suggestions: list[FaqSuggestion]


class Gaps(BaseModel):
    gaps: list[FaqGap]
    total: int


@api.post("/api/v1/faq/ask", summary="政策问答：回答居民的问题", body=AskIn, response=FaqAnswer,
          invalid_code="invalid_question",
          description="回复类型见 FaqAnswer.kind：answer 直接回答，clarify 请居民从候选中选择，"
                      "refer 转介其他部门的热线，"
                      "decline 答不上来（记为知识缺口）。confidence 为校准后的概率。",
          errors={400: "问题缺失、不是字符串、为空、超过 500 字，或请求不是 JSON 对象"})
async def ask(request: web.Request, body: AskIn) -> web.Response | dict:
    question = _question(body.question)
    result = knowledge.answer(question)
    await knowledge.record_gap(request.app[DB], question, result)
    return result.to_dict()


@api.get("/api/v1/faq/categories", summary="问答分类及每类条目数", response=Categories)
async def categories(request: web.Request) -> dict:
    return {"categories": knowledge.current_engine().corpus.categories()}


@api.get("/api/v1/faq/search", summary="搜索问答（搜索框用，最多 10 条）", query=SearchIn, response=SearchResults,
         invalid_code="invalid_question", errors={400: "缺少搜索内容、只有空白或超过 500 字（invalid_question）"})
async def search(request: web.Request, query: SearchIn) -> dict:
    return {"results": knowledge.search(_question(query.q, field="q"), 10)}


@api.get("/api/v1/faq/{faq_id}", summary="按编号查看一条问答", response=FaqEntry,
         errors={404: "没有该问答", 405: "该路径不支持 GET（例如 /api/v1/faq/ask 只接受 POST）"})
async def get_entry(request: web.Request) -> dict:
    faq_id = request.match_info["faq_id"]
    if faq_id in _NOT_ENTRIES:
        raise web.HTTPMethodNotAllowed(request.method, _NOT_ENTRIES[faq_id])
    found = knowledge.entry(faq_id) if len(faq_id) <= 64 else None
    if found is None:
        raise not_found("没有找到该问题", code="faq_not_found")
    return found.to_dict()


async def require_gap_reader(request: web.Request) -> None:
    """The configured ADMIN_TOKEN as a bearer token, or a signed-in staff member with role admin."""
    admin_token = request.app[SETTINGS].admin_token
    token = bearer_token(request)
    if admin_token and token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return
    await current_staff(request, "admin")


@api.get("/api/v1/staff/faq/gaps", summary="知识缺口：拒答或不确定的问题，按出现次数从多到少", query=GapsIn,
         response=Gaps, auth=True, tags=["faq", "staff"],
         description="需要管理员：Authorization: Bearer <ADMIN_TOKEN>，或角色为 admin 的工作人员登录令牌。",
         errors={400: "分页参数无效", 403: "不是管理员"})
async def gaps(request: web.Request, query: GapsIn) -> dict:
    await require_gap_reader(request)
    db = request.app[DB]
    return {"gaps": await knowledge.list_gaps(db, query.limit, query.skip), "total": await count_gaps(db)}
