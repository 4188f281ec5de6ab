"""Family access by consent (家庭共济 / 亲情账户): the verified owner of an insured identity grants
another account access to its settlements (``view``, and ``messages``: the settlement messages),
for a limited time or until revoked.

A resident's grant starts ``pending`` with a one-time invitation code (kept only as a hash) that the
other account enters to accept it; only then is it ``active``. Staff can record a grant made at the
counter (an elderly resident without a smartphone): the grantee shows their counter code, staff
record the proof seen, and the grant is active at once. The owner (or the grantee) revokes at any
time; an ``expires_at`` in the past ends it without any job (every query compares with now).

At most ``limit`` grantees per identity (pending invitations included): checked in the transaction
that creates or accepts a grant, which touches the identity's anchor, so two concurrent grants
cannot both take the last place.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import DESCENDING, AsyncMongoClient, IndexModel, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from bot.db import declare_indexes, in_transaction
from bot.settlements import identities
from bot.settlements.verification import code_hash

COLLECTION = "settlement_grants"
VIEW, MESSAGES = "view", "messages"
SCOPES = (VIEW, MESSAGES)
PENDING, ACTIVE, REVOKED = "pending", "active", "revoked"
INVITATION_LIFETIME = timedelta(days=3)

declare_indexes(
    COLLECTION,
    IndexModel([("id_hash", 1), ("status", 1)], name="identity_status"),
    IndexModel([("grantee_openid", 1), ("status", 1)], name="grantee_status"),
    IndexModel([("owner_openid", 1), ("created_at", DESCENDING)], name="owner_created"),
    IndexModel("invite_hash", name="invite_hash", unique=True,
               partialFilterExpression={"invite_hash": {"$type": "string"}}),
)


class GrantError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code = code
        self.message = message


def _live(now: datetime) -> dict[str, Any]:
    """The query of a grant that still counts: active and not expired, or pending with a live invitation."""
    not_expired = {"$or": [{"expires_at": None}, {"expires_at": {"$gt": now}}]}
    return {"$and": [not_expired, {"$or": [{"status": ACTIVE},
                                           {"status": PENDING, "invite_expires_at": {"$gt": now}}]}]}


def active_query(now: datetime) -> dict[str, Any]:
    return {"status": ACTIVE, "$or": [{"expires_at": None}, {"expires_at": {"$gt": now}}]}


async def _check_room(db: AsyncDatabase, id_hash: str, limit: int, now: datetime,
                      session: AsyncClientSession, exclude: ObjectId | None = None) -> None:
    query: dict[str, Any] = {"id_hash": id_hash, **_live(now)}
    if exclude is not None:
        query["_id"] = {"$ne": exclude}
    if await db[COLLECTION].count_documents(query, session=session) >= limit:
        raise GrantError("too_many_grantees", f"每位参保人最多授权 {limit} 个亲情账户，请先撤销不再需要的授权")


def _new_grant(source: dict[str, Any], scopes: list[str], expires_at: datetime | None, now: datetime,
               created_by: dict[str, Any]) -> dict[str, Any]:
    return {
        "_id": ObjectId(), "id_hash": source["id_hash"], "name_hash": source["name_hash"],
        "insured_name": source["name"], "id_masked": source["id_masked"],
        "owner_openid": source.get("openid"), "binding_id": source.get("_id"),
        "grantee_openid": None, "scopes": sorted(set(scopes)), "status": PENDING,
        "invite_hash": None, "invite_expires_at": None, "expires_at": expires_at,
        "created_at": now, "created_by": created_by, "accepted_at": None, "revoked_at": None, "revoked_by": None,
    }


def _check_terms(scopes: list[str], expires_at: datetime | None, now: datetime) -> None:
    if not scopes or any(s not in SCOPES for s in scopes) or VIEW not in scopes:
        raise GrantError("invalid_scopes", "授权范围应包含 view（查看结算），可另加 messages（接收结算通知）")
    if expires_at is not None and expires_at <= now:
        raise GrantError("invalid_expiry", "授权截止时间必须晚于现在")


async def invite(
    client: AsyncMongoClient, db: AsyncDatabase, binding: dict[str, Any], scopes: list[str],
    expires_at: datetime | None, limit: int,
) -> tuple[dict[str, Any], str]:
    """The owner's grant of a verified binding, pending until accepted; returns it and the invitation code."""
    now = datetime.now(UTC)
    if not binding.get("verified"):
        raise GrantError("identity_not_verified", "请先完成参保人身份核验，再授权亲情账户")
    _check_terms(scopes, expires_at, now)
    code = secrets.token_hex(5).upper()  # 10 hex characters, shown once to the owner
    grant = _new_grant(binding, scopes, expires_at, now, {"kind": "resident"})
    grant["invite_hash"] = code_hash(f"grant:{code}")
    grant["invite_expires_at"] = now + INVITATION_LIFETIME
    await identities.ensure_anchor(db, binding["id_hash"])

    async def work(session: AsyncClientSession) -> None:
        await identities.touch_anchor(db, binding["id_hash"], session)
        await _check_room(db, binding["id_hash"], limit, now, session)
        await db[COLLECTION].insert_one(grant, session=session)

    await in_transaction(client, work)
    return grant, code


async def accept(client: AsyncMongoClient, db: AsyncDatabase, grantee: str, code: str, limit: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    found = await db[COLLECTION].find_one({"invite_hash": code_hash(f"grant:{code.strip().upper()}"),
                                           "status": PENDING, "invite_expires_at": {"$gt": now}})
    if found is None:
        raise GrantError("invitation_not_found", "授权邀请码无效或已过期，请让参保人重新发起授权")
    if found["owner_openid"] == grantee:
        raise GrantError("self_grant", "不能接受自己发起的授权")
    await identities.ensure_anchor(db, found["id_hash"])

    async def work(session: AsyncClientSession) -> dict[str, Any]:
        await identities.touch_anchor(db, found["id_hash"], session)
        await _check_room(db, found["id_hash"], limit, now, session, exclude=found["_id"])
        changes = {"status": ACTIVE, "grantee_openid": grantee, "accepted_at": now, "invite_hash": None}
        result = await db[COLLECTION].update_one({"_id": found["_id"], "status": PENDING}, {"$set": changes},
                                                 session=session)
        if result.modified_count != 1:
            raise GrantError("invitation_not_found", "授权邀请码无效或已过期，请让参保人重新发起授权")
        return {**found, **changes}

    return await in_transaction(client, work)


async def record_at_counter(
    client: AsyncMongoClient, db: AsyncDatabase, *, insured: dict[str, Any], grantee: str, scopes: list[str],
    expires_at: datetime | None, limit: int, staff: str, proof: list[str], note: str | None,
) -> dict[str, Any]:
    """A grant staff recorded at the counter (active at once). ``insured``: id_hash, name_hash, name, id_masked."""
    now = datetime.now(UTC)
    _check_terms(scopes, expires_at, now)
    grant = _new_grant({**insured, "openid": None, "_id": None}, scopes, expires_at, now,
                       {"kind": "staff", "staff": staff, "proof": proof, "note": note})
    grant.update(status=ACTIVE, grantee_openid=grantee, accepted_at=now)
    await identities.ensure_anchor(db, insured["id_hash"])

    async def work(session: AsyncClientSession) -> None:
        await identities.touch_anchor(db, insured["id_hash"], session)
        await _check_room(db, insured["id_hash"], limit, now, session)
        await db[COLLECTION].insert_one(grant, session=session)

    await in_transaction(client, work)
    return grant


async def owned_hashes(db: AsyncDatabase, openid: str) -> list[str]:
    """The identities the resident verifiably owns: they see and revoke every grant of them, also
    one recorded at the counter before they used the mini-program."""
    return [b["id_hash"] for b in await identities.bindings_of_resident(db, openid) if b.get("verified")]


def _theirs(openid: str, hashes: list[str]) -> dict[str, Any]:
    return {"$or": [{"owner_openid": openid}, {"grantee_openid": openid}, {"id_hash": {"$in": hashes}}]}


async def revoke(db: AsyncDatabase, openid: str, grant_id: str) -> dict[str, Any] | None:
    """The owner (who made it, or any verified owner of the identity) or the grantee ends a grant;
    None when it is not theirs (or unknown). Revoking twice answers the revoked grant."""
    oid = identities.object_id(grant_id)
    if oid is None:
        return None
    now = datetime.now(UTC)
    query = {"_id": oid, **_theirs(openid, await owned_hashes(db, openid))}
    grant = await db[COLLECTION].find_one_and_update(
        {**query, "status": {"$in": [PENDING, ACTIVE]}},
        {"$set": {"status": REVOKED, "revoked_at": now, "revoked_by": openid, "invite_hash": None}},
        return_document=ReturnDocument.AFTER)
    return grant if grant is not None else await db[COLLECTION].find_one(query)


async def revoke_by_staff(db: AsyncDatabase, grant_id: str, staff: str) -> dict[str, Any] | None:
    """Staff end a grant at the counter (the owner without a smartphone asked them to)."""
    oid = identities.object_id(grant_id)
    if oid is None:
        return None
    grant = await db[COLLECTION].find_one_and_update(
        {"_id": oid, "status": {"$in": [PENDING, ACTIVE]}},
        {"$set": {"status": REVOKED, "revoked_at": datetime.now(UTC), "revoked_by": f"staff:{staff}",
                  "invite_hash": None}},
        return_document=ReturnDocument.AFTER)
    return grant if grant is not None else await db[COLLECTION].find_one({"_id": oid})


async def revoke_of_binding(db: AsyncDatabase, binding_id: ObjectId, openid: str) -> list[str]:
    """Unbinding ends the grants made from that binding; returns their ids."""
    query = {"binding_id": binding_id, "status": {"$in": [PENDING, ACTIVE]}}
    ids = [g["_id"] for g in await db[COLLECTION].find(query, {"_id": 1}).to_list()]
    await db[COLLECTION].update_many(
        {"_id": {"$in": ids}},
        {"$set": {"status": REVOKED, "revoked_at": datetime.now(UTC), "revoked_by": openid, "invite_hash": None}})
    return [str(i) for i in ids]


async def given(db: AsyncDatabase, openid: str) -> list[dict[str, Any]]:
    """Grants of the identities the resident owns (made in the app or at the counter)."""
    query = {"$or": [{"owner_openid": openid}, {"id_hash": {"$in": await owned_hashes(db, openid)}}]}
    return await db[COLLECTION].find(query).sort("created_at", DESCENDING).to_list()


async def received(db: AsyncDatabase, openid: str) -> list[dict[str, Any]]:
    return await db[COLLECTION].find({"grantee_openid": openid}).sort("created_at", DESCENDING).to_list()


async def viewing_grants(db: AsyncDatabase, openid: str, now: datetime | None = None) -> list[dict[str, Any]]:
    query = {"grantee_openid": openid, "scopes": VIEW, **active_query(now or datetime.now(UTC))}
    return await db[COLLECTION].find(query).to_list()


async def message_grants(
    db: AsyncDatabase, id_hash: str, name_hash: str | None, session: AsyncClientSession | None = None
) -> list[dict[str, Any]]:
    if name_hash is None:
        return []
    query = {"id_hash": id_hash, "name_hash": name_hash, "scopes": MESSAGES, **active_query(datetime.now(UTC))}
    return await db[COLLECTION].find(query, session=session).to_list()


def state_of(grant: dict[str, Any], now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    expires = grant.get("expires_at")
    if grant["status"] == REVOKED:
        return REVOKED
    if expires is not None and _aware(expires) <= now:
        return "expired"
    if grant["status"] == PENDING and _aware(grant["invite_expires_at"]) <= now:
        return "expired"
    return grant["status"]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def grant_view(grant: dict[str, Any], *, for_owner: bool) -> dict[str, Any]:
    view = {
        "id": str(grant["_id"]),
        "insured_name": grant["insured_name"],
        "id_number_masked": grant["id_masked"],
        "scopes": grant["scopes"],
        "state": state_of(grant),
        "expires_at": grant.get("expires_at"),
        "created_at": grant["created_at"],
        "accepted_at": grant.get("accepted_at"),
        "revoked_at": grant.get("revoked_at"),
        "recorded_at_counter": grant["created_by"].get("kind") == "staff",
    }
    if for_owner:
        view["binding_id"] = str(grant["binding_id"]) if grant.get("binding_id") else None
        view["grantee_accepted"] = grant.get("grantee_openid") is not None
    return view
