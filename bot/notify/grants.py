"""Subscribe-message grants (订阅消息授权): each time a user accepts a template in the subscribe
pop-up, WeChat allows exactly one message of that template. We count them per user and template.

Collection ``subscription_grants``, one document per (openid, template_id) — unique index:

    {openid: str, template_id: str,
     available: int,            # messages we may still send; never below 0
     accepted_total: int,       # acceptances ever recorded
     last_status: str | None,   # last status WeChat reported: accept / reject / ban / filter …
     last_sent: {msg_id, error_code, error_status, at} | None,  # from subscribe_msg_sent_event
     holders: [str],            # notifications that took a grant (the last HOLDERS_KEPT)
     created_at, updated_at}

Protocol with the sender (the notification dispatcher, ``bot/notify/dispatcher.py``):
- the WeChat callback calls ``add_grant`` for every ``accept`` (subscribe_msg_popup_event /
  subscribe_msg_change_event) and ``revoke_grants`` when the user switches a template off;
- before sending a subscribe message the sender takes a grant for the notification with
  ``hold_grant`` (or ``hold_grants`` for a claimed batch): atomic, only while ``available > 0``,
  and the grant document remembers the holder, so a retried or reclaimed attempt finds it again;
- a message WeChat accepted needs nothing more; ``release_grant`` ends a hold that did not lead to
  one — the grant goes back, except after 43101 (WeChat had none to use).
The bookkeeping functions take an optional ``session`` so they can join the caller's transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, IndexModel, UpdateMany
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bot.db import declare_indexes

COLLECTION = "subscription_grants"

declare_indexes(
    COLLECTION,
    IndexModel([("openid", ASCENDING), ("template_id", ASCENDING)], unique=True, name="openid_template_unique"),
)


async def _upsert(
    db: AsyncDatabase, openid: str, template_id: str, update: dict[str, Any],
    session: AsyncClientSession | None,
) -> None:
    now = datetime.now(UTC)
    update = {**update, "$set": {**update.get("$set", {}), "updated_at": now}}
    touched = set(update.get("$inc", {})) | set(update["$set"])
    defaults = {"created_at": now, "available": 0, "accepted_total": 0, "last_status": None, "last_sent": None}
    update["$setOnInsert"] = {k: v for k, v in defaults.items() if k not in touched}
    key = {"openid": openid, "template_id": template_id}
    try:
        await db[COLLECTION].update_one(key, update, upsert=True, session=session)
    except DuplicateKeyError:
        if session is not None:
            raise  # the transaction retries as a whole
        # two first-time upserts raced; the document exists now, so this update matches it
        await db[COLLECTION].update_one(key, update, upsert=True)


async def add_grant(
    db: AsyncDatabase, openid: str, template_id: str, n: int = 1, *,
    status: str = "accept", session: AsyncClientSession | None = None,
) -> None:
    """Record ``n`` acceptances of ``template_id`` by ``openid``."""
    if n <= 0:
        raise ValueError("n must be positive")
    await _upsert(db, openid, template_id,
                  {"$inc": {"available": n, "accepted_total": n}, "$set": {"last_status": status}}, session)


async def revoke_grants(
    db: AsyncDatabase, openid: str, template_id: str, status: str, *,
    session: AsyncClientSession | None = None,
) -> None:
    """The user switched the template off (reject/ban in subscribe_msg_change_event): nothing is left."""
    await _upsert(db, openid, template_id, {"$set": {"available": 0, "last_status": status}}, session)


async def note_status(
    db: AsyncDatabase, openid: str, template_id: str, status: str, *,
    session: AsyncClientSession | None = None,
) -> None:
    """Remember a pop-up answer that grants nothing (reject in the pop-up)."""
    await _upsert(db, openid, template_id, {"$set": {"last_status": status}}, session)


async def note_sent(
    db: AsyncDatabase, openid: str, template_id: str, *, msg_id: str | None, error_code: str | None,
    error_status: str | None, session: AsyncClientSession | None = None,
) -> None:
    """Record WeChat's report of a delivered (or failed) subscribe message (subscribe_msg_sent_event)."""
    await _upsert(db, openid, template_id, {"$set": {"last_sent": {
        "msg_id": msg_id, "error_code": error_code, "error_status": error_status, "at": datetime.now(UTC),
    }}}, session)


async def available(db: AsyncDatabase, openid: str, template_id: str) -> int:
    document = await db[COLLECTION].find_one({"openid": openid, "template_id": template_id})
    return int(document.get("available", 0)) if document else 0


# --- grants held by one notification (added for the outbox dispatcher, bot/notify/dispatcher.py) -------
# A dispatcher may die between taking a grant and sending. With ``hold_grant`` the grant document
# remembers who took it (``holders``, the last HOLDERS_KEPT), in the same single-document update
# that decrements ``available``, so the notification's next attempt finds its grant again instead
# of losing it or taking a second one. ``release_grant`` ends a hold that did not lead to a
# delivered message; a delivered one needs no extra write (its entry ages out of ``holders``).
HOLDERS_KEPT = 50


async def hold_grant(
    db: AsyncDatabase, openid: str, template_id: str, holder: str, *, may_hold_already: bool = True
) -> bool:
    """Take one grant for ``holder`` (a notification id); True also when it already holds one
    (pass ``may_hold_already=False`` on a first attempt to skip that check)."""
    key = {"openid": openid, "template_id": template_id}
    taken = await db[COLLECTION].update_one(
        {**key, "available": {"$gt": 0}, "holders": {"$ne": holder}},
        {"$inc": {"available": -1}, "$push": {"holders": {"$each": [holder], "$slice": -HOLDERS_KEPT}},
         "$set": {"updated_at": datetime.now(UTC)}},
    )
    if taken.modified_count == 1:
        return True
    return may_hold_already and await db[COLLECTION].count_documents({**key, "holders": holder}, limit=1) == 1


async def release_grant(db: AsyncDatabase, openid: str, template_id: str, holder: str, *, used: bool) -> None:
    """End ``holder``'s hold: ``used`` when WeChat spent the grant (accepted, or 43101: there was
    none), otherwise it is given back. Nothing happens when ``holder`` holds no grant."""
    update: dict[str, Any] = {"$pull": {"holders": holder}, "$set": {"updated_at": datetime.now(UTC)}}
    if not used:
        update["$inc"] = {"available": 1}
    await db[COLLECTION].update_one({"openid": openid, "template_id": template_id, "holders": holder}, update)


async def hold_grants(db: AsyncDatabase, holds: list[tuple[str, str, str]]) -> set[str]:
    """``hold_grant`` for many ``(openid, template_id, holder)`` at once, for holders that hold no
    grant yet (a notification's first attempt); returns the holders that hold one now. Each
    (openid, template_id) may appear once.

    One ``update_many`` per template — a pipeline update that picks each document's holder by its
    openid — instead of one update per holder: on the embedded server a batch of single-document
    updates cost a quarter of the outbox drain rate. No ``holders`` condition in the filter (a
    ``$nin`` over the batch's holders doubled the cost per document): hence first attempts only.
    """
    if not holds:
        return set()
    if len({(openid, template_id) for openid, template_id, _ in holds}) != len(holds):
        raise ValueError("one holder per (openid, template_id)")
    by_template: dict[str, dict[str, str]] = {}
    for openid, template_id, holder in holds:
        by_template.setdefault(template_id, {})[openid] = holder
    now = datetime.now(UTC)
    result = await db[COLLECTION].bulk_write([
        UpdateMany({"openid": {"$in": list(owners)}, "template_id": template_id, "available": {"$gt": 0}},
                   [{"$set": {"available": {"$subtract": ["$available", 1]}, "updated_at": now, "holders": {"$slice": [
                       {"$concatArrays": [{"$ifNull": ["$holders", []]}, [{"$arrayElemAt": [
                           list(owners.values()), {"$indexOfArray": [list(owners), "$openid"]}]}]]},
                       -HOLDERS_KEPT]}}}])
        for template_id, owners in by_template.items()], ordered=False)
    wanted = {holder for *_, holder in holds}
    if result.modified_count == len(holds):  # every one taken: nothing to read back
        return wanted
    states = await db[COLLECTION].find(
        {"openid": {"$in": list({openid for openid, *_ in holds})},
         "template_id": {"$in": list(by_template)}},
        {"openid": 1, "template_id": 1, "holders": 1}).to_list()
    return {holder for state in states
            if (holder := by_template.get(state["template_id"], {}).get(state["openid"])) in wanted
            and holder in state.get("holders", [])}
