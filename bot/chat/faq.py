"""Chat questions answered from the policy FAQ (``knowledge``), with numbered follow-ups.

- answer: the answer, then up to three questions numbered 1–3: "您可能还想问" (close siblings that may be
  what was meant) or related questions;
- clarify: "您是不是想问：" and the candidates numbered;
- refer: a neighbouring service's hotline and channel (12333, 12329, 12345); not a knowledge gap;
- decline: an apology offering 转人工 and the 12393 hotline; the question is recorded as a gap.
The numbers offered are remembered per user (``chat_state``, 30 minutes), so replying "2" shows
that entry.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from prometheus_client import Counter

from bot.chat.router import ChatContext, fit_text

log = logging.getLogger(__name__)

CHOICES = "faq_choices"  # chat-state key: the faq_ids offered, in the order they were numbered
MAX_OFFERED = 3

DECLINE = ("抱歉，这个问题我暂时还答不上来。您可以换个说法再问一次，或者：\n"
           "· 回复“人工”转人工客服\n"
           "· 拨打 12393 医保服务热线咨询")
UNAVAILABLE = "问答服务暂时不可用，请稍后再试。您也可以回复“人工”转人工客服，或拨打 12393 医保服务热线咨询。"
PICK_HINT = "回复数字查看对应问题的答案。"

FAQ_CACHE = Counter("wechat_faq_cache_total", "Chat FAQ answers served from the answer cache or computed", ["result"])


class AnswerCache:
    """Recent answers per exact question text, for the engine in use (popular questions repeat
    all day; an engine swap by hot reload empties it). Answers are never mutated after creation."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._engine: object | None = None
        self._answers: OrderedDict[str, Any] = OrderedDict()

    def answer(self, question: str) -> Any:
        import knowledge  # the FAQ capability; imported late so the chat starts even while it loads

        engine = knowledge.installed_engine()
        if engine is not self._engine or engine is None:
            self._answers.clear()
            self._engine = engine
        cached = self._answers.get(question)
        if cached is not None:
            self._answers.move_to_end(question)
            FAQ_CACHE.labels("hit").inc()
            return cached
        FAQ_CACHE.labels("miss").inc()
        result = knowledge.answer(question)
        if self._engine is not None and result.reason != "unavailable":
            self._answers[question] = result
            if len(self._answers) > self.size:
                self._answers.popitem(last=False)
        return result


CACHE = AnswerCache()


def numbered(suggestions: list[dict[str, str]]) -> str:
    return "\n".join(f"{n}. {item['question']}" for n, item in enumerate(suggestions, start=1))


def compose_answer(answer: str, related: list[dict[str, str]], header: str | None = None) -> str:
    """The answer, trimmed so the numbered follow-ups (under ``header``: "您可能还想问：" for close
    siblings, else "相关问题：") always fit in one message."""
    if not related:
        return fit_text(answer)
    tail = f"\n\n{header or '相关问题：'}\n{numbered(related)}\n{PICK_HINT}"
    return fit_text(answer, 2000 - len(tail.encode("utf-8"))) + tail


def compose_entry(question: str, answer: str) -> str:
    return fit_text(f"【{question}】\n{answer}")


async def answer_question(ctx: ChatContext) -> str:
    import knowledge  # the FAQ capability; imported late so the chat starts even while it loads

    question = ctx.text or ""
    try:
        result = CACHE.answer(question)
    except Exception:
        log.exception("FAQ answer failed")
        return UNAVAILABLE
    offered = list(result.suggestions or [])[:MAX_OFFERED]
    if offered:
        await ctx.remember(CHOICES, [item["faq_id"] for item in offered])
    else:
        await ctx.forget(CHOICES)  # a later number must not pick from an older list
    if result.answered:
        return compose_answer(result.answer or "", offered, result.message)
    if result.reason is None:  # a real question we could not answer: a knowledge gap
        ctx.after_reply(lambda: knowledge.record_gap(ctx.db, question, result))
    if offered:
        return fit_text(f"{result.message or '您是不是想问：'}\n{numbered(offered)}\n{PICK_HINT}")
    if result.reason is not None and result.message:
        return result.message  # greeting, empty, too long …: the FAQ's own words
    return DECLINE


async def has_choices(ctx: ChatContext) -> bool:
    return bool(await ctx.recall(CHOICES))


async def show_choice(ctx: ChatContext) -> str:
    """A number reply after an answer or a "您是不是想问" list."""
    import knowledge

    choices: list[str] = await ctx.recall(CHOICES, [])
    assert ctx.match is not None
    number = int(ctx.match.group(1))
    if not 1 <= number <= len(choices):
        return f"请回复 1 到 {len(choices)} 之间的数字，或直接输入您的问题。"
    try:
        entry = knowledge.entry(choices[number - 1])
    except Exception:
        log.exception("FAQ entry lookup failed")
        return UNAVAILABLE
    if entry is None:
        await ctx.forget(CHOICES)
        return "这条问答已更新，请重新输入您的问题。"
    return compose_entry(entry.question, entry.answer)
