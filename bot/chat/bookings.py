"""Chat rules of the booking capability (registered in ``bot.chat.rules.CAPABILITY_MODULES``).

- The menu button 我的预约 (``MENU_MY_BOOKINGS``) lists the user's upcoming bookings, numbered, with
  the booking code (预约码) of each; the numbers are remembered for the conversation.
- "取消预约 N" picks booking N of that list, checks the rules (the same transition table as the
  API) and asks for a confirmation; "确认" cancels it, "不取消" keeps it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.chat.replies import PAGES, miniprogram_link
from bot.chat.router import ChatContext, Reply, fit_text, on_click, on_text
from bot.errors import ApiError
from bot.masking import mask_name
from scheduling import bookings
from scheduling import transitions as t
from scheduling.booking_base import Actor, Policy, local_text

LIST_KEY = "booking_list"
PENDING_KEY = "booking_cancel"
LIST_TTL = timedelta(minutes=30)
CONFIRM_TTL = timedelta(minutes=5)
MAX_LISTED = 10


def describe(booking: dict[str, Any]) -> str:
    """One line per booking; names masked (chat messages travel through WeChat's servers)."""
    line = f"{local_text(booking['start'])} {booking.get('institution_name', '')} {booking.get('service_name', '')}"
    patient = booking.get("patient") or {}
    if patient.get("name"):
        line += f"（{mask_name(patient['name'])}）"
    line = f"{line}【{t.STATUS_LABELS.get(booking['status'], booking['status'])}】"
    if booking.get("code") and booking["status"] in t.CODE_ACTIVE:
        line += f" 预约码 {booking['code']}"
    if booking.get("provisional"):
        line += "（节假日安排暂定）"
    return line


async def _upcoming(ctx: ChatContext) -> list[dict[str, Any]]:
    return await bookings.list_for_family(ctx.db, ctx.openid, upcoming_after=datetime.now(UTC), limit=MAX_LISTED)


async def _list_reply(ctx: ChatContext, found: list[dict[str, Any]], lead: str = "") -> str:
    await ctx.remember(LIST_KEY, [b["_id"] for b in found], LIST_TTL)
    if not found:
        return (lead + "我的预约：您目前没有待进行的预约。\n"
                + miniprogram_link(ctx.settings, PAGES["bookings"], "点此进入小程序预约"))
    lines = [f"{i}. {describe(b)}" for i, b in enumerate(found, start=1)]
    return fit_text(lead + f"我的预约（待进行 {len(found)} 个）：\n" + "\n".join(lines)
                    + "\n回复“取消预约 编号”可取消，例如“取消预约 1”。\n"
                    + miniprogram_link(ctx.settings, PAGES["bookings"], "点此查看详情或改约"))


async def my_bookings(ctx: ChatContext) -> Reply:
    return await _list_reply(ctx, await _upcoming(ctx))


async def cancel_booking(ctx: ChatContext) -> Reply:
    assert ctx.match is not None
    number = int(ctx.match.group(1))
    listed = await ctx.recall(LIST_KEY)
    if listed is None:  # the numbers must refer to a list the user has seen
        return await _list_reply(ctx, await _upcoming(ctx), "请先核对编号：")
    if not 1 <= number <= len(listed):
        return f"没有编号为 {number} 的预约。请点击菜单“我的预约”查看编号。"
    actor = Actor.resident(ctx.openid)
    try:
        booking = await bookings.get(ctx.db, listed[number - 1], actor)
        # a dry run of the transition table, so the user is told now rather than after "确认"
        t.decide(booking["kind"], booking["status"], t.CANCELLED,
                 t.Situation(now=datetime.now(UTC), start=booking["start"], actor=t.RESIDENT,
                             cancel_deadline=booking.get("cancel_deadline")))
    except (ApiError, t.TransitionError) as exc:
        return exc.message
    await ctx.remember(PENDING_KEY, booking["_id"], CONFIRM_TTL)
    return (f"您要取消的预约：{describe(booking)}\n"
            "回复“确认”取消该预约；回复“不取消”保留。5 分钟内有效。")


async def cancel_pending(ctx: ChatContext) -> bool:
    return await ctx.recall(PENDING_KEY) is not None


async def confirm_cancel(ctx: ChatContext) -> Reply:
    booking_id = await ctx.recall(PENDING_KEY)
    await ctx.forget(PENDING_KEY)
    try:
        booking = await bookings.transition(ctx.db, booking_id, t.CANCELLED, Actor.resident(ctx.openid),
                                            Policy.from_settings(ctx.settings), reason="微信对话中取消")
    except ApiError as exc:
        return f"未能取消：{exc.message}"
    await ctx.forget(LIST_KEY)  # the numbers have changed
    return f"已取消预约：{describe(booking)}"


async def keep_booking(ctx: ChatContext) -> Reply:
    await ctx.forget(PENDING_KEY)
    return "好的，预约已保留。"


CHAT_RULES = [
    on_click("MENU_MY_BOOKINGS", my_bookings, name="my bookings"),
    on_text(r"^取消预约\s*(\d{1,2})$", cancel_booking, name="cancel booking N"),
    on_text(r"^(?:确认|确定|确认取消)$", confirm_cancel, when=cancel_pending, name="confirm cancellation"),
    on_text(r"^(?:不取消|不|否|算了|保留)$", keep_booking, when=cancel_pending, name="keep booking"),
]
