"""Chat rules of the settlement capability (registered in ``bot.chat.rules.CAPABILITY_MODULES``):
the menu button 结算进度 (``MENU_SETTLEMENT``) answers with the latest settlements the user may see
— through verified bindings and family grants only — and tells a resident whose bindings are not
verified yet how to verify."""

from __future__ import annotations

from bot.chat.replies import PAGES, miniprogram_link
from bot.chat.router import ChatContext, Reply, on_click
from bot.settlements.store import menu_reply


async def latest_settlements(ctx: ChatContext) -> Reply:
    text = await menu_reply(ctx.db, ctx.openid)
    return f"{text}\n{miniprogram_link(ctx.settings, PAGES['settlement'], '点此查看结算明细')}"


CHAT_RULES = [on_click("MENU_SETTLEMENT", latest_settlements, name="latest settlements")]
