"""Start-up migration: bindings made before verification existed (no ``verified`` field) become
unverified, so they reveal nothing until verified (their settlement messages not sent yet are
withdrawn), and each affected resident is told once, in the in-app inbox, why and how to verify.

Idempotent and safe in several instances at once: per resident one transaction marks the bindings
and writes the inbox entry, and the notice's marker (``_id`` = openid, unique) makes a second run —
or a concurrent instance — write no second entry. Bindings without a name hash (older than the
name check) cannot be hashed here (the plain ID number is gone, the name is kept): they get one from
their stored name, so verification can compare it later.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from bot.db import in_transaction
from bot.notify import inbox
from bot.settlements import identities
from bot.settlements.id_numbers import name_hash
from bot.settlements.store import HOW_TO_VERIFY, withdraw_messages

log = logging.getLogger(__name__)

NOTICES = "identity_verification_notices"
NOTICE_KIND = "identity_verification_required"
NOTICE_TITLE = "请完成参保人身份核验"
NOTICE_TEXT = ("为保护您和家人的医疗与费用信息，结算查询已升级为“先核验、后查看”：此前绑定的参保人需要完成身份核验，"
               "核验前不会显示结算记录，也不会发送结算通知。" + HOW_TO_VERIFY)
NOTICE_LINK = "pages/settlement/index"


async def migrate_unverified(client: AsyncMongoClient, db: AsyncDatabase, key: bytes | None) -> int:
    """Mark pre-verification bindings unverified and tell their residents; returns residents told."""
    legacy = {"verified": {"$exists": False}}
    openids = await db[identities.COLLECTION].distinct("openid", legacy)
    told = 0
    for openid in openids:
        if await in_transaction(client, lambda session, o=openid: _migrate_resident(db, key, o, session)):
            told += 1
    if openids:
        log.info("pre-verification bindings marked unverified", extra={"residents": len(openids), "told": told})
    return told


async def _migrate_resident(db: AsyncDatabase, key: bytes | None, openid: str, session: AsyncClientSession) -> bool:
    now = datetime.now(UTC)
    bindings = await db[identities.COLLECTION].find(
        {"openid": openid, "verified": {"$exists": False}}, session=session).to_list()
    for binding in bindings:
        changes: dict[str, Any] = {"verified": False, "verification": None, "unverified_by_migration": now}
        if "name_hash" not in binding and key is not None:
            changes["name_hash"] = name_hash(key, binding["name"])
        await db[identities.COLLECTION].update_one({"_id": binding["_id"]}, {"$set": changes}, session=session)
    # messages queued for them before the change and not sent yet are withdrawn too
    await withdraw_messages(db, "binding_id", [str(b["_id"]) for b in bindings], session)
    if not bindings or await db[NOTICES].find_one({"_id": openid}, session=session):
        return False
    await db[NOTICES].insert_one({"_id": openid, "at": now}, session=session)
    notice = {"_id": ObjectId(), "openid": openid, "kind": NOTICE_KIND, "payload": {}, "created_at": now}
    await db[inbox.COLLECTION].insert_one(inbox.entry_for(notice, NOTICE_TITLE, NOTICE_TEXT, NOTICE_LINK),
                                          session=session)
    return True


async def startup_step(app: Any) -> None:
    """The start-up step (``bot.app.startup_steps``), after the indexes."""
    from bot.keys import DB, MONGO
    from bot.settlements.identity_key import IDENTITY_KEY

    await migrate_unverified(app[MONGO], app[DB], app.get(IDENTITY_KEY))
