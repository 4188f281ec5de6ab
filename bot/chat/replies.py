"""The chat's built-in handlers: welcome, help, menu placeholders, transfer to a person, messages
the bot cannot read, and the subscribe-message grant events. FAQ answers are in ``wechat_faq``.

``miniprogram_link(settings, page, label)`` renders a tappable mini-program link for text replies;
other capabilities use it with the ``PAGES`` paths.
"""

from __future__ import annotations

import html
import logging

from bot.chat import handoff
from bot.chat.router import ChatContext, Reply
from bot.config import Settings
from bot.notify import grants

log = logging.getLogger(__name__)

HOTLINE = "12393"
MINIPROGRAM_NAME = "医保小助手"
PAGES = {
    "centre": "pages/centre/index",
    "nurse": "pages/nurse/index",
    "bookings": "pages/bookings/index",
    "settlement": "pages/settlement/index",
}

CAPABILITIES = (
    "1. 医保政策问答：直接发送文字或语音提问，如“异地就医怎么备案”“门诊慢特病怎么申请”\n"
    "2. 延时服务预约：政务服务中心工作日下班后、周六上午可预约办理医保业务（菜单“预约办事”）\n"
    "3. 网约护士：为行动不便的家人预约护士上门护理（菜单“网约护士”）\n"
    "4. 我的预约、结算进度：查看预约，接收医保结算（报销）进度通知\n"
    f"回复“人工”转人工客服，或拨打 {HOTLINE} 医保服务热线。"
)
WELCOME = f"您好，欢迎关注{MINIPROGRAM_NAME}！我可以为您提供：\n{CAPABILITIES}"
HELP = f"{MINIPROGRAM_NAME}使用帮助：\n{CAPABILITIES}"
ASK_TO_TYPE = "抱歉，没有听清您的语音，请用文字输入您的问题，例如“生育津贴怎么领取”。"
UNSUPPORTED = ("抱歉，我暂时只能看懂文字和语音消息，无法识别图片、位置、链接或视频。"
               "请直接输入您想咨询的医保问题，或点击下方菜单预约服务；"
               f"回复“人工”转人工客服，或拨打 {HOTLINE} 医保服务热线。")


def miniprogram_link(settings: Settings, page: str, label: str) -> str:
    """A link that opens ``page`` of the mini-program from a chat message (WeChat text-message
    ``<a data-miniprogram-…>``); without a configured mini-program AppID, where to find it."""
    if not settings.wechat_miniprogram_app_id:
        return f"请在微信中搜索小程序“{MINIPROGRAM_NAME}”，{label}。"
    appid = html.escape(settings.wechat_miniprogram_app_id, quote=True)
    return (f'<a data-miniprogram-appid="{appid}" data-miniprogram-path="{html.escape(page, quote=True)}" '
            f'href="https://mp.weixin.qq.com">{label}</a>')


# --- events and menus ----------------------------------------------------------------------------

async def welcome(ctx: ChatContext) -> Reply:
    return WELCOME


async def unsubscribed(ctx: ChatContext) -> Reply:
    return None  # the dispatcher already marked the user unsubscribed; WeChat shows nothing


async def help_menu(ctx: ChatContext) -> Reply:
    return HELP


async def book_centre(ctx: ChatContext) -> Reply:
    return ("延时服务预约：政务服务中心在工作日下班后延时一小时、周六上午为群众办理医保业务，"
            "请先预约时段再前往。\n" + miniprogram_link(ctx.settings, PAGES["centre"], "点此进入小程序预约"))


async def book_nurse(ctx: ChatContext) -> Reply:
    return ("网约护士（互联网+护理服务）：为行动不便的老人、卧床病人等提供上门护理，如更换导尿管、"
            "压疮护理、新生儿黄疸监测等。填写患者信息和地址后，医院审核并安排护士上门。\n"
            + miniprogram_link(ctx.settings, PAGES["nurse"], "点此进入小程序预约"))


async def my_bookings(ctx: ChatContext) -> Reply:
    return "查看或取消您的预约，请进入小程序“我的预约”。\n" + miniprogram_link(
        ctx.settings, PAGES["bookings"], "点此查看我的预约")


async def settlement(ctx: ChatContext) -> Reply:
    return ("结算进度：医保结算（报销）状态有变化时，我们会通过订阅消息通知您；也可以在小程序中随时查看。\n"
            + miniprogram_link(ctx.settings, PAGES["settlement"], "点此查看结算进度"))


async def transfer_to_agent(ctx: ChatContext) -> Reply:
    """转人工: queue the resident for a person on the staff console (``bot.chat.handoff``) and tell
    them at once who will answer and when. Their next messages go to that queue until it is closed."""
    written = (getattr(ctx.message, "content", None) or ctx.text or "人工").strip()
    current, new = await handoff.request_person(ctx.db, ctx.openid, written)
    if new:
        return handoff.REQUESTED_REPLY
    return handoff.STILL_WAITING_REPLY if current["status"] == handoff.WAITING else handoff.TAKEN_REPLY


async def in_handoff(ctx: ChatContext) -> bool:
    return await handoff.open_for(ctx.db, ctx.openid) is not None


async def relay_to_agent(ctx: ChatContext) -> Reply:
    """A message of a resident whose request for a person is open: it goes to the staff member."""
    text = ctx.text or ""  # normalised, for matching; staff read what the resident wrote
    written = (getattr(ctx.message, "content", None) or getattr(ctx.message, "recognition", None) or text).strip()
    if handoff.END_PATTERN.match(text):
        current = await handoff.open_for(ctx.db, ctx.openid)
        if current is not None:
            try:
                await handoff.close(ctx.db, None, current["_id"], "resident", by_resident=True)
            except handoff.HandoffError:
                pass
        return handoff.ENDED_REPLY
    current = await handoff.relay(ctx.db, ctx.openid, written)
    if current is None:
        return None
    # while nobody has taken it, acknowledge; once a person is on it, they answer themselves
    return handoff.RELAYED_REPLY if current["status"] == handoff.WAITING else None


async def ask_to_type(ctx: ChatContext) -> Reply:
    return ASK_TO_TYPE


async def unsupported(ctx: ChatContext) -> Reply:
    return UNSUPPORTED


async def no_reply(ctx: ChatContext) -> Reply:
    return None


# --- subscribe-message grants --------------------------------------------------------------------

def _subscriptions(ctx: ChatContext) -> list[dict]:
    try:
        items = ctx.message.subscribes
    except (KeyError, TypeError, AttributeError):
        log.warning("subscribe-message event without a list", extra={"event": ctx.event})
        return []
    return [item for item in items if isinstance(item, dict) and item.get("TemplateId")]


async def subscription_changed(ctx: ChatContext) -> Reply:
    """subscribe_msg_popup_event / subscribe_msg_change_event: each ``accept`` is one grant."""
    for item in _subscriptions(ctx):
        template_id, status = item["TemplateId"], str(item.get("SubscribeStatusString", "")).lower()
        if status == "accept":
            await grants.add_grant(ctx.db, ctx.openid, template_id)
        elif ctx.event == "subscribe_msg_change_event":
            await grants.revoke_grants(ctx.db, ctx.openid, template_id, status or "reject")
        else:
            await grants.note_status(ctx.db, ctx.openid, template_id, status or "reject")
    return None


async def subscription_sent(ctx: ChatContext) -> Reply:
    """subscribe_msg_sent_event: WeChat's report of each delivered (or failed) subscribe message."""
    for item in _subscriptions(ctx):
        await grants.note_sent(ctx.db, ctx.openid, item["TemplateId"], msg_id=item.get("MsgID"),
                               error_code=item.get("ErrorCode"), error_status=item.get("ErrorStatus"))
    return None
