"""人工: residents who asked for a person. Our own queue instead of WeChat's customer-service
transfer (which, on an account without that service, left the resident with no answer at all).

A request (``handoffs``, one open per resident: a partial unique index) is *waiting* until a
staff member *takes* it, then *taken* until it is *closed* (by the staff member or the resident).
While it is open, the resident's messages are appended to it instead of being answered by the
FAQ. A staff answer goes out as a customer-service message while the 48-hour window is open;
outside it (or when WeChat refuses: 45015/45047) it goes to the resident's in-app inbox, and the
staff member is told which channel carried it.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bot.db import declare_indexes
from bot.masking import mask_text
from bot.notify import inbox
from bot.wechat import users
from bot.wechat.api import OUT_OF_REPLY_COUNT, OUT_OF_REPLY_WINDOW, WeChatClient, WeChatError

log = logging.getLogger(__name__)

COLLECTION = "handoffs"
WAITING, TAKEN, CLOSED = "waiting", "taken", "closed"
STATUS_LABELS = {WAITING: "等待接入", TAKEN: "处理中", CLOSED: "已结束"}
CUSTOMER_SERVICE, INBOX = "customer_service", "inbox"
MAX_MESSAGES = 200
MAX_TEXT = 600
# What the resident is promised, and when the console flags a request nobody answered.
SERVICE_HOURS = "工作日 9:00–17:00"
ANSWER_WITHIN = "2 小时"
FLAG_AFTER = timedelta(hours=2)
END_PATTERN = re.compile(r"^(?:结束|退出|取消)(?:人工|客服|人工服务|人工客服)$")

declare_indexes(
    COLLECTION,
    IndexModel("openid", unique=True, partialFilterExpression={"open": True}, name="one_open_per_resident"),
    IndexModel([("status", ASCENDING), ("created_at", ASCENDING)], name="status_created"),
    IndexModel([("openid", ASCENDING), ("created_at", DESCENDING)], name="openid_created"),
)

REQUESTED_REPLY = (f"已转接人工客服：工作人员会在{SERVICE_HOURS}回复您，一般在{ANSWER_WITHIN}内；"
                   "非工作时间的留言将在下一个工作日处理。请直接留言说明您的问题，回复“结束人工”可随时结束。"
                   "急事请拨打 12393 医保服务热线。")
STILL_WAITING_REPLY = f"您已在等待人工客服，工作人员接入后会回复您（{SERVICE_HOURS}，一般在{ANSWER_WITHIN}内）。"
TAKEN_REPLY = "工作人员正在为您处理，请直接留言。"
RELAYED_REPLY = "您的留言已转给人工客服，请稍候。"
ENDED_REPLY = "本次人工服务已结束。如还有问题，可以直接提问，或回复“人工”再次联系工作人员。"
CLOSED_BY_STAFF_TEXT = "本次人工服务已结束，感谢您的耐心。如还有问题，可以直接提问，或回复“人工”再次联系工作人员。"


class HandoffError(Exception):
    """A console action that cannot be done now; the message is Chinese, for staff."""


def _message(sender: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"from": sender, "text": text[:MAX_TEXT], "at": datetime.now(UTC), **extra}


async def open_for(db: AsyncDatabase, openid: str) -> dict[str, Any] | None:
    return await db[COLLECTION].find_one({"openid": openid, "open": True})


async def request_person(db: AsyncDatabase, openid: str, text: str) -> tuple[dict[str, Any], bool]:
    """Open a request for ``openid`` (or add to the open one); returns it and whether it is new."""
    now = datetime.now(UTC)
    for _ in range(3):
        existing = await db[COLLECTION].find_one_and_update(
            {"openid": openid, "open": True},
            {"$push": {"messages": {"$each": [_message("resident", text)], "$slice": -MAX_MESSAGES}},
             "$set": {"last_resident_at": now}}, return_document=ReturnDocument.AFTER)
        if existing is not None:
            return existing, False
        document = {"_id": str(ObjectId()), "openid": openid, "status": WAITING, "open": True, "created_at": now,
                    "last_resident_at": now, "taken_by": None, "taken_at": None, "first_answer_at": None,
                    "closed_at": None, "closed_by": None, "messages": [_message("resident", text)]}
        try:
            await db[COLLECTION].insert_one(document)
        except DuplicateKeyError:
            continue  # another message of this resident opened it meanwhile: add to that one
        log.info("resident asked for a person", extra={"handoff_id": document["_id"]})
        return document, True
    raise RuntimeError("could not open a handoff")


async def relay(db: AsyncDatabase, openid: str, text: str) -> dict[str, Any] | None:
    """Append a resident's message to their open request; None when there is none."""
    return await db[COLLECTION].find_one_and_update(
        {"openid": openid, "open": True},
        {"$push": {"messages": {"$each": [_message("resident", text)], "$slice": -MAX_MESSAGES}},
         "$set": {"last_resident_at": datetime.now(UTC)}}, return_document=ReturnDocument.AFTER)


async def take(db: AsyncDatabase, handoff_id: str, username: str) -> dict[str, Any]:
    """Claim a waiting request; exactly one staff member wins."""
    taken = await db[COLLECTION].find_one_and_update(
        {"_id": handoff_id, "status": WAITING},
        {"$set": {"status": TAKEN, "taken_by": username, "taken_at": datetime.now(UTC)}},
        return_document=ReturnDocument.AFTER)
    if taken is None:
        current = await db[COLLECTION].find_one({"_id": handoff_id})
        if current is None:
            raise HandoffError("找不到该人工服务请求")
        if current["status"] == TAKEN:
            raise HandoffError(f"该请求已由 {current['taken_by']} 接入")
        raise HandoffError("该请求已结束")
    return taken


async def answer(db: AsyncDatabase, client: WeChatClient | None, handoff_id: str, username: str,
                 text: str) -> str:
    """Send ``text`` to the resident from the staff member holding the request; returns the
    channel that carried it (customer-service message, or the in-app inbox)."""
    text = text.strip()
    if not text:
        raise HandoffError("请填写回复内容")
    handoff = await db[COLLECTION].find_one({"_id": handoff_id})
    if handoff is None:
        raise HandoffError("找不到该人工服务请求")
    if handoff["status"] != TAKEN or handoff["taken_by"] != username:
        raise HandoffError("请先接入该请求再回复" if handoff["status"] == WAITING else "该请求不由您处理或已结束")
    channel = await deliver(db, client, handoff["openid"], text, title="人工客服回复")
    now = datetime.now(UTC)
    await db[COLLECTION].update_one(
        {"_id": handoff_id},
        {"$push": {"messages": {"$each": [_message("staff", text, by=username, channel=channel)],
                                "$slice": -MAX_MESSAGES}}})
    await db[COLLECTION].update_one({"_id": handoff_id, "first_answer_at": None}, {"$set": {"first_answer_at": now}})
    return channel


async def deliver(db: AsyncDatabase, client: WeChatClient | None, openid: str, text: str, *, title: str) -> str:
    """A customer-service message while the window is open, else (or when refused) the inbox."""
    if client is not None and await users.in_service_window(db, openid):
        try:
            await client.send_custom_text(openid, text)
            return CUSTOMER_SERVICE
        except WeChatError as exc:
            if exc.errcode not in (OUT_OF_REPLY_WINDOW, OUT_OF_REPLY_COUNT) and exc.transient:
                raise HandoffError("微信暂时无法发送，请稍后重试") from None
            log.info("customer-service message refused, using the inbox",
                     extra={"errcode": exc.errcode, "text": mask_text(text[:40])})
    now = datetime.now(UTC)
    await inbox.add_copies(db, [{"_id": ObjectId(), "openid": openid, "kind": "agent_reply", "title": title,
                                 "text": text, "link": None, "ref": {}, "created_at": now, "delivered_at": now,
                                 "read_at": None}])
    return INBOX


async def close(db: AsyncDatabase, client: WeChatClient | None, handoff_id: str, username: str, *,
                by_resident: bool = False) -> dict[str, Any]:
    closed = await db[COLLECTION].find_one_and_update(
        {"_id": handoff_id, "open": True},
        {"$set": {"status": CLOSED, "closed_at": datetime.now(UTC), "closed_by": username}, "$unset": {"open": ""}},
        return_document=ReturnDocument.AFTER)
    if closed is None:
        raise HandoffError("该请求已结束")
    if not by_resident:
        try:
            await deliver(db, client, closed["openid"], CLOSED_BY_STAFF_TEXT, title="人工服务已结束")
        except HandoffError:
            log.info("could not tell the resident the handoff ended", extra={"handoff_id": handoff_id})
    return closed


async def list_requests(db: AsyncDatabase, *, status: str | None = None, taken_by: str | None = None,
                        skip: int = 0, limit: int = 20) -> tuple[list[dict[str, Any]], int]:
    query: dict[str, Any] = {}
    if status:
        query["status"] = status
    else:
        query["open"] = True
    if taken_by:
        query["taken_by"] = taken_by
    found = await (db[COLLECTION].find(query, {"messages": {"$slice": -1}}).sort("created_at", ASCENDING)
                   .skip(skip).limit(limit).to_list(None))
    return found, await db[COLLECTION].count_documents(query)


async def get(db: AsyncDatabase, handoff_id: str) -> dict[str, Any] | None:
    return await db[COLLECTION].find_one({"_id": handoff_id})


def overdue(handoff: dict[str, Any], now: datetime | None = None) -> bool:
    """Flag: open and unanswered for longer than ``FLAG_AFTER``."""
    now = now or datetime.now(UTC)
    return bool(handoff.get("open")) and handoff.get("first_answer_at") is None and \
        now - handoff["created_at"].replace(tzinfo=UTC) > FLAG_AFTER
