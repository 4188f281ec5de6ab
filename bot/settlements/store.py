"""Settlement records: ingest of signed settlement-system events, binding and verification of
insured identities, and what residents may see.

Who sees a settlement: a resident whose binding of that identity is **verified** and whose bound
name matches the settlement's name (both compared as keyed hashes), and an account the owner granted
``view`` (``bot.settlements.family``). Nobody else, whatever they bound: an unverified binding shows
nothing and queues nothing.

One event is one transaction: the event id is recorded (unique, so a replay is acknowledged and
ignored), the settlement is created or moved (``bot.settlements.rules.decide``), the event joins the
settlement's history, and every verified binding and ``messages`` grant of that identity and name
gets a ``settlement_status`` notification in the outbox. An event for an identity nobody verified
yet is kept; verifying it later creates one notification per matching settlement in the
verification's transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bot.db import declare_indexes, in_transaction
from bot.masking import mask_name
from bot.notify import outbox
from bot.settlements import access_log, family, identities
from bot.settlements.id_numbers import IdNumber, identity_hash, name_hash
from bot.settlements.rules import (
    FUND_PARTS,
    STATUS_LABELS,
    TOTAL_LABEL,
    VISIT_TYPES,
    SettlementEvent,
    decide,
    format_yuan,
)
from bot.settlements.verification import REPLAYED, Verification, VerificationRefusedError

log = logging.getLogger(__name__)

COLLECTION = "settlements"
EVENTS = "settlement_events"
FACE_RESULTS = "face_verify_results"
NOTIFICATION_KIND = "settlement_status"

declare_indexes(COLLECTION, IndexModel([("id_hash", 1), ("updated_at", DESCENDING)], name="identity_updated"))


class IdentityMismatchError(Exception):
    """The event names another insured person than the settlement already on record."""


class TooManyIdentitiesError(Exception):
    pass


class NameMismatchError(Exception):
    """The settlements on record of a verified identity carry another name than the binding."""


@dataclass(frozen=True)
class IngestOutcome:
    result: str  # "applied" (new state), "late" (kept in history only) or "duplicate" (event seen before)
    settlement_id: str
    status: str | None = None
    notified: int = 0


def _amount_strings(event: SettlementEvent) -> dict[str, str]:
    return {key: str(value) for key, value in event.amounts.items()}


def notification_payload(settlement: dict[str, Any], access: dict[str, Any]) -> dict[str, Any]:
    """What a settlement message needs (the plain ID number is not in it). ``access``: a binding or a grant."""
    payload = {
        "settlement_id": settlement["_id"],
        "status": settlement["status"],
        "sequence": settlement["sequence"],
        "institution_name": settlement["institution"]["name"],
        "visit_type": settlement["visit"]["type"],
        "admitted_on": settlement["visit"]["admitted_on"],
        "discharged_on": settlement["visit"].get("discharged_on"),
        "amounts": settlement["amounts"],
        "reason": settlement.get("reason"),
        "occurred_at": settlement["occurred_at"],
        "insured_name": access.get("name") or access.get("insured_name"),
        "id_number_masked": settlement["id_masked"],
    }
    if "grantee_openid" in access:
        payload["grant_id"] = str(access["_id"])
    else:
        payload["binding_id"] = str(access["_id"])
    return payload


async def _notify(
    db: AsyncDatabase, settlement: dict[str, Any], accesses: list[dict[str, Any]], session: AsyncClientSession
) -> int:
    for access in accesses:
        openid = access["grantee_openid"] if "grantee_openid" in access else access["openid"]
        await outbox.enqueue(db, kind=NOTIFICATION_KIND, openid=openid,
                             payload=notification_payload(settlement, access), session=session)
    return len(accesses)


async def withdraw_messages(db: AsyncDatabase, field: str, ids: list[str],
                            session: AsyncClientSession | None = None) -> int:
    """Cancel the settlement messages not sent yet that a binding or grant (``field`` ``binding_id``
    or ``grant_id`` of the payload) no longer entitles to: unverified, unbound or revoked."""
    if not ids:
        return 0
    result = await db[outbox.COLLECTION].update_many(
        {"kind": NOTIFICATION_KIND, f"payload.{field}": {"$in": ids}, "status": outbox.PENDING},
        {"$set": {"status": outbox.CANCELLED, "updated_at": datetime.now(UTC)}}, session=session)
    return result.modified_count


async def _audience(db: AsyncDatabase, settlement: dict[str, Any], session: AsyncClientSession) -> list[dict]:
    """Who is told about a settlement: verified bindings of its identity and name, and ``messages`` grants."""
    bindings = await identities.verified_bindings_of_identity(
        db, settlement["id_hash"], settlement.get("name_hash"), session)
    grants = await family.message_grants(db, settlement["id_hash"], settlement.get("name_hash"), session)
    told = {b["openid"] for b in bindings}
    return bindings + [g for g in grants if g["grantee_openid"] not in told]


async def ingest(client: AsyncMongoClient, db: AsyncDatabase, key: bytes, event: SettlementEvent) -> IngestOutcome:
    """Apply one validated event; raises ``TransitionRefusedError`` or ``IdentityMismatchError`` (nothing changed)."""
    if await db[EVENTS].find_one({"_id": event.event_id}, {"_id": 1}):
        return IngestOutcome("duplicate", event.settlement_id)
    id_hash = identity_hash(key, event.id_number)
    insured_name_hash = name_hash(key, event.insured_name)
    await identities.ensure_anchor(db, id_hash)
    now = datetime.now(UTC)
    amounts = _amount_strings(event)

    async def work(session: AsyncClientSession) -> IngestOutcome:
        current = await db[COLLECTION].find_one({"_id": event.settlement_id}, session=session)
        if current is not None and (current["id_hash"] != id_hash
                                    or current.get("name_hash", insured_name_hash) != insured_name_hash):
            raise IdentityMismatchError()
        decision = decide(current and current["status"], current and current["sequence"],
                          event.status, event.sequence)
        await db[EVENTS].insert_one(
            {"_id": event.event_id, "settlement_id": event.settlement_id, "sequence": event.sequence,
             "status": event.status, "applied": decision.apply, "received_at": now},
            session=session,
        )
        entry = {"event_id": event.event_id, "sequence": event.sequence, "status": event.status,
                 "occurred_at": event.occurred_at, "received_at": now, "applied": decision.apply,
                 "reason": event.reason, "amounts": amounts}
        state = {"status": event.status, "sequence": event.sequence, "institution": {"name": event.institution_name},
                 "visit": event.visit, "amounts": amounts, "reason": event.reason,
                 "occurred_at": event.occurred_at, "updated_at": now}
        names = {"name_hash": insured_name_hash, "name_masked": mask_name(event.insured_name)}
        if current is None:
            settlement = {"_id": event.settlement_id, "id_hash": id_hash, "id_masked": event.id_number.masked,
                          **names, **state, "created_at": now, "history": [entry]}
            await db[COLLECTION].insert_one(settlement, session=session)
        elif decision.apply:
            settlement = {**current, **names, **state}
            await db[COLLECTION].update_one({"_id": event.settlement_id},
                                            {"$set": {**names, **state}, "$push": {"history": entry}},
                                            session=session)
        else:
            settlement = current
            await db[COLLECTION].update_one({"_id": event.settlement_id},
                                            {"$set": names, "$push": {"history": entry}}, session=session)
        notified = 0
        if decision.status_changed:
            await identities.touch_anchor(db, id_hash, session)
            notified = await _notify(db, settlement, await _audience(db, settlement, session), session)
        return IngestOutcome("applied" if decision.apply else "late", event.settlement_id,
                             settlement["status"], notified)

    try:
        outcome = await in_transaction(client, work)
    except DuplicateKeyError:
        # a concurrent delivery of the same event committed first
        if await db[EVENTS].find_one({"_id": event.event_id}, {"_id": 1}):
            return IngestOutcome("duplicate", event.settlement_id)
        raise
    log.info("settlement event", extra={"event_id": event.event_id, "settlement_id": event.settlement_id,
                                        "sequence": event.sequence, "status": event.status,
                                        "result": outcome.result, "notified": outcome.notified})
    return outcome


async def bind_identity(
    client: AsyncMongoClient, db: AsyncDatabase, key: bytes, openid: str, name: str, number: IdNumber,
    verification: Verification | None = None,
) -> tuple[dict[str, Any], bool]:
    """Bind an identity to a resident (unverified without ``verification``); returns (binding, created).

    Binding the same identity again returns the binding; with a verification it verifies it (and
    takes the verified name). Raises ``VerificationRefusedError(face_verify_replayed)`` for a face result used before
    and ``NameMismatchError`` when the identity's settlements on record all carry another name.
    """
    id_hash = identity_hash(key, number)
    bound_name_hash = name_hash(key, name)
    existing = await identities.find_binding(db, openid, id_hash)
    if existing is not None and (verification is None or existing.get("verified")):
        return existing, False
    await identities.ensure_anchor(db, id_hash)

    async def work(session: AsyncClientSession) -> tuple[dict[str, Any], bool]:
        binding = await identities.find_binding(db, openid, id_hash, session)
        created = binding is None
        if binding is None:
            if await identities.count_of_resident(db, openid, session) >= identities.MAX_PER_RESIDENT:
                raise TooManyIdentitiesError()
            binding = identities.new_binding(openid, name, bound_name_hash, number.kind, id_hash, number.masked)
            if verification is None:
                await db[identities.COLLECTION].insert_one(binding, session=session)
                return binding, True
        elif verification is None or binding.get("verified"):
            return binding, False
        assert verification is not None
        return await _verify(db, binding, created, name, bound_name_hash, verification, session), created

    try:
        return await in_transaction(client, work)
    except DuplicateKeyError:
        existing = await identities.find_binding(db, openid, id_hash)
        if existing is None:
            raise
        return existing, False


async def _verify(
    db: AsyncDatabase, binding: dict[str, Any], created: bool, name: str, bound_name_hash: str,
    verification: Verification, session: AsyncClientSession,
) -> dict[str, Any]:
    """Mark the binding verified (inserting it when new) and queue the settlements on record."""
    now = datetime.now(UTC)
    if verification.result_hash:  # single use: the unique _id refuses a replay, even a concurrent one
        try:
            await db[FACE_RESULTS].insert_one({"_id": verification.result_hash, "openid": binding["openid"],
                                               "binding_id": binding["_id"], "used_at": now}, session=session)
        except DuplicateKeyError:
            raise VerificationRefusedError(REPLAYED) from None
    await identities.touch_anchor(db, binding["id_hash"], session)
    on_record = await db[COLLECTION].find({"id_hash": binding["id_hash"]}, session=session).to_list()
    named = [s for s in on_record if "name_hash" in s]
    if named and not any(s["name_hash"] == bound_name_hash for s in named):
        raise NameMismatchError()
    changes = {"verified": True, "verification": verification.record(now), "name": name,
               "name_hash": bound_name_hash, "verified_at": now}
    binding = {**binding, **changes}
    if created:
        await db[identities.COLLECTION].insert_one(binding, session=session)
    else:
        await db[identities.COLLECTION].update_one({"_id": binding["_id"]}, {"$set": changes}, session=session)
    for settlement in named:
        if settlement["name_hash"] == bound_name_hash:
            await _notify(db, settlement, [binding], session)
    return binding


# --- what a resident sees ------------------------------------------------------------------------


async def accesses_of(db: AsyncDatabase, openid: str) -> list[dict[str, Any]]:
    """What lets the resident see settlements: verified bindings, then active ``view`` grants."""
    bindings = [b for b in await identities.bindings_of_resident(db, openid) if b.get("verified")]
    grants = await family.viewing_grants(db, openid)
    return bindings + grants


def _key(access: dict[str, Any]) -> tuple[str, str]:
    return access["id_hash"], access["name_hash"]


async def visible_settlements(
    db: AsyncDatabase, openid: str, limit: int = 20
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The resident's settlements, newest first, each with the binding or grant that makes it visible."""
    return await _settlements_of(db, await accesses_of(db, openid), limit)


async def _settlements_of(
    db: AsyncDatabase, accesses: list[dict[str, Any]], limit: int
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for access in accesses:
        by_key.setdefault(_key(access), access)
    if not by_key:
        return []
    query = {"$or": [{"id_hash": id_hash, "name_hash": hashed} for id_hash, hashed in by_key]}
    cursor = db[COLLECTION].find(query, {"history": 0})
    documents = await cursor.sort("updated_at", DESCENDING).limit(limit).to_list()
    return [(doc, by_key[(doc["id_hash"], doc["name_hash"])]) for doc in documents]


async def visible_settlement(db: AsyncDatabase, openid: str, settlement_id: str) -> tuple[dict, dict] | None:
    settlement = await db[COLLECTION].find_one({"_id": settlement_id})
    if settlement is None or "name_hash" not in settlement:
        return None
    for access in await accesses_of(db, openid):
        if _key(access) == (settlement["id_hash"], settlement["name_hash"]):
            return settlement, access
    return None


def _insured(settlement: dict[str, Any], access: dict[str, Any]) -> dict[str, Any]:
    if "grantee_openid" in access:
        return {"via": "grant", "grant_id": str(access["_id"]), "binding_id": None,
                "name": access["insured_name"], "id_number_masked": settlement["id_masked"]}
    return {"via": "binding", "binding_id": str(access["_id"]), "grant_id": None, "name": access["name"],
            "id_number_masked": settlement["id_masked"]}


def settlement_view(settlement: dict[str, Any], access: dict[str, Any], *, detail: bool = False) -> dict[str, Any]:
    amounts = settlement["amounts"]
    view: dict[str, Any] = {
        "id": settlement["_id"],
        "status": settlement["status"],
        "status_label": STATUS_LABELS[settlement["status"]],
        "insured": _insured(settlement, access),
        "institution": settlement["institution"],
        "visit": {**settlement["visit"], "type_label": VISIT_TYPES[settlement["visit"]["type"]]},
        "amounts": amounts,
        "reason": settlement.get("reason"),
        "occurred_at": settlement["occurred_at"],
        "updated_at": settlement["updated_at"],
    }
    if detail:
        view.update(settlement_details(settlement))
    return view


def settlement_details(settlement: dict[str, Any]) -> dict[str, Any]:
    amounts = settlement["amounts"]
    history = sorted(settlement.get("history", []), key=lambda h: (h["sequence"], h["received_at"]))
    return {
        "breakdown": [{"key": "total", "label": TOTAL_LABEL, "amount": amounts["total"]}] + [
            {"key": key, "label": label, "amount": amounts[key]} for key, label in FUND_PARTS],
        "history": [
            {"sequence": h["sequence"], "status": h["status"], "status_label": STATUS_LABELS[h["status"]],
             "occurred_at": h["occurred_at"], "received_at": h["received_at"], "applied": h["applied"],
             "reason": h.get("reason")}
            for h in history
        ],
    }


HOW_TO_VERIFY = ("请在小程序「结算查询」中完成人脸核身（需本人操作），或携带身份证件到服务大厅窗口由工作人员核验；"
                 "为家人查询，请家人本人核验后在小程序中向您授权（亲情账户）。")


async def menu_reply(db: AsyncDatabase, openid: str, limit: int = 3) -> str:
    """The chat's MENU_SETTLEMENT answer: the latest settlements this user may see (verified or granted)."""
    bindings = await identities.bindings_of_resident(db, openid)
    accesses = await accesses_of(db, openid)
    if not accesses:
        if bindings:
            return f"您绑定的参保人尚未完成身份核验，核验前不会显示结算信息，也不会发送结算通知。{HOW_TO_VERIFY}"
        return ("您还没有绑定参保人。请在小程序「结算查询」中绑定本人的身份证号（或医保编号）并完成核验，"
                "之后每次结算进度变化都会通知您。")
    rows = await _settlements_of(db, accesses, limit)
    unverified = sum(1 for b in bindings if not b.get("verified"))
    note = f"\n另有 {unverified} 位参保人尚未核验，核验后才会显示。" if unverified else ""
    if not rows:
        return "暂未查询到您可查看的结算记录。医院或医保经办机构提交结算后，我们会第一时间通知您。" + note
    lines = ["您最近的结算："]
    for number, (settlement, access) in enumerate(rows, start=1):
        amounts = settlement["amounts"]
        name = access.get("name") or access.get("insured_name")
        lines.append(
            f"{number}. {name}·{settlement['institution']['name']}"
            f"（{VISIT_TYPES[settlement['visit']['type']]}，{settlement['visit']['admitted_on']}）："
            f"{STATUS_LABELS[settlement['status']]}，总费用 {format_yuan(amounts['total'])} 元，"
            f"个人自付 {format_yuan(amounts['self_pay'])} 元"
        )
    return "\n".join(lines) + note


# --- staff ---------------------------------------------------------------------------------------

DEFAULT_LOOKUP_REASON = "窗口业务查询（脱敏）"


async def face_result_used(db: AsyncDatabase, result_hash: str) -> bool:
    return await db[FACE_RESULTS].find_one({"_id": result_hash}, {"_id": 1}) is not None


async def lookup_for_staff(
    db: AsyncDatabase, key: bytes, *, staff: str, role: str, settlement_id: str | None = None,
    number: IdNumber | None = None, reveal: bool = False, reason: str | None = None, limit: int = 20,
) -> list[dict[str, Any]]:
    """A staff member's lookup by settlement number or ID number, masked unless ``reveal`` (which
    needs a ``reason``). Every lookup is written to the access log first, also one that finds
    nothing. Unmasked adds what the masked view hides: the verified bound name(s), the ID number
    the staff member typed, and which accounts may see the settlement."""
    if reveal and not reason:
        raise ValueError("an unmasked lookup needs a reason")
    if number is not None:
        id_hash = identity_hash(key, number)
        found = await db[COLLECTION].find({"id_hash": id_hash}).sort("updated_at", DESCENDING).limit(limit).to_list()
        subjects = [id_hash]
    else:
        found = [s for s in [await db[COLLECTION].find_one({"_id": settlement_id})] if s]
        subjects = sorted({s["id_hash"] for s in found})
    what = access_log.SETTLEMENT_LOOKUP_UNMASKED if reveal else access_log.SETTLEMENT_LOOKUP
    for subject in subjects:
        await access_log.record(db, staff=staff, role=role, what=what, why=reason or DEFAULT_LOOKUP_REASON,
                                id_hash=subject,
                                target={"settlement_ids": [s["_id"] for s in found if s["id_hash"] == subject],
                                        "by": "id_number" if number is not None else "settlement_id"})
    views = []
    for settlement in found:
        view = {
            "id": settlement["_id"], "status": settlement["status"],
            "status_label": STATUS_LABELS[settlement["status"]],
            "insured": {"name_masked": settlement.get("name_masked"), "id_number_masked": settlement["id_masked"]},
            "institution": settlement["institution"],
            "visit": {**settlement["visit"], "type_label": VISIT_TYPES[settlement["visit"]["type"]]},
            "amounts": settlement["amounts"], "reason": settlement.get("reason"),
            "occurred_at": settlement["occurred_at"], "updated_at": settlement["updated_at"],
            **settlement_details(settlement),
            "masked": not reveal,
        }
        if reveal:
            bindings = await identities.verified_bindings_of_identity(db, settlement["id_hash"],
                                                                      settlement.get("name_hash"))
            grants = await db[family.COLLECTION].find(
                {"id_hash": settlement["id_hash"], "name_hash": settlement.get("name_hash"),
                 **family.active_query(datetime.now(UTC))}).to_list()
            view["insured"]["names"] = sorted({b["name"] for b in bindings} | {g["insured_name"] for g in grants})
            view["insured"]["id_number"] = number.value if number is not None else None
            view["visible_to"] = {"verified_bindings": len(bindings), "active_grants": len(grants)}
        views.append(view)
    return views


async def bind_at_counter(
    client: AsyncMongoClient, db: AsyncDatabase, key: bytes, *, openid: str, name: str, number: IdNumber,
    staff: str, role: str, documents: list[str], note: str | None,
) -> tuple[dict[str, Any], bool]:
    """Staff checked the documents and bind (and verify) the identity to the resident's account."""
    verification = Verification("counter", {"staff": staff, "documents": documents, "note": note})
    binding, created = await bind_identity(client, db, key, openid, name, number, verification)
    await access_log.record(db, staff=staff, role=role, what=access_log.COUNTER_BINDING,
                            why="；".join(documents) + (f"（{note}）" if note else ""),
                            id_hash=binding["id_hash"], openid=openid, target={"binding_id": str(binding["_id"])})
    return binding, created
