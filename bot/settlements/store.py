"""Settlement records: ingest of signed settlement-system events, binding of insured identities,
and what residents may see.

One event is one transaction: the event id is recorded (unique, so a replay is acknowledged and
ignored), the settlement is created or moved (``bot.settlements.rules.decide``), the event joins the
settlement's history, and every resident who bound that identity gets a ``settlement_status``
notification in the outbox. An event for an identity nobody has bound yet is kept; binding it later
creates one notification per matching settlement in the binding's transaction.
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
from bot.notify import outbox
from bot.settlements import identities
from bot.settlements.id_numbers import IdNumber, identity_hash
from bot.settlements.rules import (
    FUND_PARTS,
    STATUS_LABELS,
    TOTAL_LABEL,
    VISIT_TYPES,
    SettlementEvent,
    decide,
    format_yuan,
)

log = logging.getLogger(__name__)

COLLECTION = "settlements"
EVENTS = "settlement_events"
NOTIFICATION_KIND = "settlement_status"

declare_indexes(COLLECTION, IndexModel([("id_hash", 1), ("updated_at", DESCENDING)], name="identity_updated"))


class IdentityMismatchError(Exception):
    """The event names another insured person than the settlement already on record."""


class TooManyIdentitiesError(Exception):
    pass


@dataclass(frozen=True)
class IngestOutcome:
    result: str  # "applied" (new state), "late" (kept in history only) or "duplicate" (event seen before)
    settlement_id: str
    status: str | None = None
    notified: int = 0


def _amount_strings(event: SettlementEvent) -> dict[str, str]:
    return {key: str(value) for key, value in event.amounts.items()}


def notification_payload(settlement: dict[str, Any], binding: dict[str, Any]) -> dict[str, Any]:
    """What a settlement message needs (the plain ID number is not in it)."""
    return {
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
        "insured_name": binding["name"],
        "id_number_masked": settlement["id_masked"],
        "binding_id": str(binding["_id"]),
    }


async def _notify(
    db: AsyncDatabase, settlement: dict[str, Any], bindings: list[dict[str, Any]], session: AsyncClientSession
) -> int:
    for binding in bindings:
        await outbox.enqueue(db, kind=NOTIFICATION_KIND, openid=binding["openid"],
                             payload=notification_payload(settlement, binding), session=session)
    return len(bindings)


async def ingest(client: AsyncMongoClient, db: AsyncDatabase, key: bytes, event: SettlementEvent) -> IngestOutcome:
    """Apply one validated event; raises ``TransitionRefusedError`` or ``IdentityMismatchError`` (nothing changed)."""
    if await db[EVENTS].find_one({"_id": event.event_id}, {"_id": 1}):
        return IngestOutcome("duplicate", event.settlement_id)
    id_hash = identity_hash(key, event.id_number)
    await identities.ensure_anchor(db, id_hash)
    now = datetime.now(UTC)
    amounts = _amount_strings(event)

    async def work(session: AsyncClientSession) -> IngestOutcome:
        current = await db[COLLECTION].find_one({"_id": event.settlement_id}, session=session)
        if current is not None and current["id_hash"] != id_hash:
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
        if current is None:
            settlement = {"_id": event.settlement_id, "id_hash": id_hash, "id_masked": event.id_number.masked,
                          **state, "created_at": now, "history": [entry]}
            await db[COLLECTION].insert_one(settlement, session=session)
        elif decision.apply:
            settlement = {**current, **state}
            await db[COLLECTION].update_one({"_id": event.settlement_id},
                                            {"$set": state, "$push": {"history": entry}}, session=session)
        else:
            settlement = current
            await db[COLLECTION].update_one({"_id": event.settlement_id},
                                            {"$push": {"history": entry}}, session=session)
        notified = 0
        if decision.status_changed:
            await identities.touch_anchor(db, id_hash, session)
            bindings = await identities.bindings_of_identity(db, id_hash, session)
            notified = await _notify(db, settlement, bindings, session)
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
    client: AsyncMongoClient, db: AsyncDatabase, key: bytes, openid: str, name: str, number: IdNumber
) -> tuple[dict[str, Any], bool, int]:
    """Bind an identity to a resident; returns (binding, created, notifications for settlements on record).

    Binding the same identity again returns the first binding unchanged.
    """
    id_hash = identity_hash(key, number)
    existing = await identities.find_binding(db, openid, id_hash)
    if existing is not None:
        return existing, False, 0
    await identities.ensure_anchor(db, id_hash)

    async def work(session: AsyncClientSession) -> tuple[dict[str, Any], bool, int]:
        again = await identities.find_binding(db, openid, id_hash, session)
        if again is not None:
            return again, False, 0
        if await identities.count_of_resident(db, openid, session) >= identities.MAX_PER_RESIDENT:
            raise TooManyIdentitiesError()
        await identities.touch_anchor(db, id_hash, session)
        binding = identities.new_binding(openid, name, number.kind, id_hash, number.masked)
        await db[identities.COLLECTION].insert_one(binding, session=session)
        settlements = await db[COLLECTION].find({"id_hash": id_hash}, session=session).to_list()
        notified = 0
        for settlement in settlements:
            notified += await _notify(db, settlement, [binding], session)
        return binding, True, notified

    try:
        return await in_transaction(client, work)
    except DuplicateKeyError:
        existing = await identities.find_binding(db, openid, id_hash)
        if existing is None:
            raise
        return existing, False, 0


async def visible_settlements(
    db: AsyncDatabase, openid: str, limit: int = 20
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The resident's settlements, newest first, each with the binding that makes it visible."""
    return await _settlements_of(db, await identities.bindings_of_resident(db, openid), limit)


async def _settlements_of(
    db: AsyncDatabase, bindings: list[dict[str, Any]], limit: int
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    by_hash = {b["id_hash"]: b for b in bindings}
    if not by_hash:
        return []
    cursor = db[COLLECTION].find({"id_hash": {"$in": list(by_hash)}}, {"history": 0})
    documents = await cursor.sort("updated_at", DESCENDING).limit(limit).to_list()
    return [(doc, by_hash[doc["id_hash"]]) for doc in documents]


async def visible_settlement(db: AsyncDatabase, openid: str, settlement_id: str) -> tuple[dict, dict] | None:
    settlement = await db[COLLECTION].find_one({"_id": settlement_id})
    if settlement is None:
        return None
    binding = await identities.find_binding(db, openid, settlement["id_hash"])
    return (settlement, binding) if binding else None


def settlement_view(settlement: dict[str, Any], binding: dict[str, Any], *, detail: bool = False) -> dict[str, Any]:
    amounts = settlement["amounts"]
    view: dict[str, Any] = {
        "id": settlement["_id"],
        "status": settlement["status"],
        "status_label": STATUS_LABELS[settlement["status"]],
        "insured": {"binding_id": str(binding["_id"]), "name": binding["name"],
                    "id_number_masked": settlement["id_masked"]},
        "institution": settlement["institution"],
        "visit": {**settlement["visit"], "type_label": VISIT_TYPES[settlement["visit"]["type"]]},
        "amounts": amounts,
        "reason": settlement.get("reason"),
        "occurred_at": settlement["occurred_at"],
        "updated_at": settlement["updated_at"],
    }
    if detail:
        view["breakdown"] = [{"key": "total", "label": TOTAL_LABEL, "amount": amounts["total"]}] + [
            {"key": key, "label": label, "amount": amounts[key]} for key, label in FUND_PARTS
        ]
        history = sorted(settlement.get("history", []), key=lambda h: (h["sequence"], h["received_at"]))
        view["history"] = [
            {"sequence": h["sequence"], "status": h["status"], "status_label": STATUS_LABELS[h["status"]],
             "occurred_at": h["occurred_at"], "received_at": h["received_at"], "applied": h["applied"],
             "reason": h.get("reason")}
            for h in history
        ]
    return view


async def menu_reply(db: AsyncDatabase, openid: str, limit: int = 3) -> str:
    """The chat's MENU_SETTLEMENT answer: the latest settlements of the identities this user bound."""
    bindings = await identities.bindings_of_resident(db, openid)
    if not bindings:
        return ("您还没有绑定参保人。请在小程序「结算查询」中绑定本人或家人的身份证号（或医保编号），"
                "之后每次结算进度变化都会通知您。")
    rows = await _settlements_of(db, bindings, limit)
    if not rows:
        return "暂未查询到您绑定的参保人的结算记录。医院或医保经办机构提交结算后，我们会第一时间通知您。"
    lines = ["您最近的结算："]
    for number, (settlement, binding) in enumerate(rows, start=1):
        amounts = settlement["amounts"]
        lines.append(
            f"{number}. {binding['name']}·{settlement['institution']['name']}"
            f"（{VISIT_TYPES[settlement['visit']['type']]}，{settlement['visit']['admitted_on']}）："
            f"{STATUS_LABELS[settlement['status']]}，总费用 {format_yuan(amounts['total'])} 元，"
            f"个人自付 {format_yuan(amounts['self_pay'])} 元"
        )
    return "\n".join(lines)
