"""Read-only queries of the console's lists (filters, sort, paging), over the booking domain's
collections. Only reads live here; every change goes through the domain's functions
(``scheduling.bookings.transition`` …), which re-check every rule.

TODO(scheduling): these belong in ``scheduling/bookings.py`` as ``list_pending`` and friends; they
are here because that module is being changed in parallel."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from bot.errors import ApiError
from bot.notify import outbox
from scheduling import bookings, nurses
from scheduling import credentials as nurse_credentials
from scheduling import transitions as t
from scheduling.booking_base import BOOKINGS

PAGE_SIZE = 20
TODAY_VISIT_STATUSES = (t.CONFIRMED, t.ON_THE_WAY, t.IN_SERVICE, t.COMPLETED, t.NO_SHOW)


async def pending_requests(db: AsyncDatabase, institution_id: str, *, service_id: str | None = None,
                           skip: int = 0, limit: int = PAGE_SIZE) -> tuple[list[dict[str, Any]], int]:
    """Nursing requests awaiting review, the nearest review deadline first: the order and the
    count from a narrow query, then the page's requests in full."""
    query: dict[str, Any] = {"institution_id": institution_id, "status": t.REQUESTED}
    if service_id:
        query["service_id"] = service_id
    keys = await db[BOOKINGS].find(query, {"_id": 1, "review_deadline": 1}).to_list(None)
    keys.sort(key=lambda b: (b.get("review_deadline") or datetime.max.replace(tzinfo=UTC), b["_id"]))
    ids = [b["_id"] for b in keys[skip:skip + limit]]
    full = {b["_id"]: b for b in await db[BOOKINGS].find({"_id": {"$in": ids}}).to_list(None)} if ids else {}
    return [full[i] for i in ids if i in full], len(keys)


async def visits_of_day(db: AsyncDatabase, institution_id: str, day: str, nurse_id: str | None = None,
                        ) -> list[dict[str, Any]]:
    query: dict[str, Any] = {"institution_id": institution_id, "date": day, "kind": t.NURSING,
                             "status": {"$in": list(TODAY_VISIT_STATUSES)}}
    if nurse_id:
        query["nurse_id"] = nurse_id
    return await db[BOOKINGS].find(query).sort("start", ASCENDING).to_list(500)


DAY_FIELDS = {"_id": 1, "kind": 1, "status": 1, "start": 1, "end": 1, "date": 1, "service_name": 1, "openid": 1,
              "note": 1, "created_at": 1}


async def day_list(db: AsyncDatabase, institution_id: str, day: str, *, status: str | None = None,
                   skip: int = 0, limit: int = 200) -> tuple[list[dict[str, Any]], int, dict[str, int]]:
    """A day's bookings by slot time: one page, how many match, and the count per status of the
    whole day. One query for all three (a day holds at most a few thousand bookings; on the
    embedded database every extra scan of them costs more than sorting them here)."""
    found = await db[BOOKINGS].find({"institution_id": institution_id, "date": day}, DAY_FIELDS).to_list(None)
    counts: dict[str, int] = {}
    for booking in found:
        counts[booking["status"]] = counts.get(booking["status"], 0) + 1
    if status:
        found = [b for b in found if b["status"] == status]
    found.sort(key=lambda b: (b["start"], b["created_at"], b["_id"]))
    return found[skip:skip + limit], len(found), counts


async def search_bookings(db: AsyncDatabase, institution_id: str | None, *, status: str | None = None,
                          day: str | None = None, kind: str | None = None, skip: int = 0,
                          limit: int = PAGE_SIZE) -> tuple[list[dict[str, Any]], int]:
    query: dict[str, Any] = {}
    if institution_id:
        query["institution_id"] = institution_id
    for key, value in (("status", status), ("date", day), ("kind", kind)):
        if value:
            query[key] = value
    found = await (db[BOOKINGS].find(query).sort([("start", DESCENDING), ("_id", ASCENDING)])
                   .skip(skip).limit(limit).to_list(None))
    return found, await db[BOOKINGS].count_documents(query)


async def messages_of(db: AsyncDatabase, booking_id: str) -> list[dict[str, Any]]:
    """Every notification about one booking (confirmations, reminders …) with its delivery state."""
    return await (db[outbox.COLLECTION].find({"payload.booking_id": booking_id})
                  .sort("created_at", ASCENDING).to_list(100))


class _Preloaded:
    """A read-only stand-in for one collection holding the documents already loaded, so the
    domain's own qualification check runs over a page of requests without a query per pair."""

    def __init__(self, documents: list[dict[str, Any]]) -> None:
        self._by_id = {n["_id"]: n for n in documents}

    async def find_one(self, query: dict[str, Any], session: Any = None) -> dict[str, Any] | None:
        return self._by_id.get(query.get("_id"))


class _PreloadedDb:
    """The nurses and their credentials (licence, insurance) of one institution, preloaded."""

    def __init__(self, staff_nurses: list[dict[str, Any]], credentials: list[dict[str, Any]]) -> None:
        self._collections = {nurses.COLLECTION: _Preloaded(staff_nurses),
                             nurse_credentials.COLLECTION: _Preloaded(credentials)}

    def __getitem__(self, name: str) -> Any:
        return self._collections[name]


async def nurse_choices(db: AsyncDatabase, institution_id: str, requests: list[dict[str, Any]],
                        ) -> dict[str, list[dict[str, Any]]]:
    """For each request: the nurses the domain would accept for it (qualified, the item's skill,
    active) who are free for the whole visit. Confirmation re-checks both in its transaction."""
    staff_nurses = await db[nurses.COLLECTION].find({"institution_id": institution_id, "active": True}) \
        .sort("name", ASCENDING).to_list(None)
    credentials = await db[nurse_credentials.COLLECTION].find(
        {"_id": {"$in": [n["_id"] for n in staff_nurses]}}).to_list(None) if staff_nurses else []
    preloaded = _PreloadedDb(staff_nurses, credentials)
    wanted = {id(r): bookings.buckets(*bookings.visit_interval(r)) for r in requests}
    all_buckets = sorted({b for bs in wanted.values() for b in bs})
    taken: set[tuple[str, datetime]] = set()
    if all_buckets and staff_nurses:
        async for row in db[bookings.ASSIGNMENTS].find(
                {"nurse_id": {"$in": [n["_id"] for n in staff_nurses]}, "bucket": {"$in": all_buckets}},
                {"nurse_id": 1, "bucket": 1}):
            taken.add((row["nurse_id"], row["bucket"].replace(tzinfo=None)))
    choices: dict[str, list[dict[str, Any]]] = {}
    for request in requests:
        fit = []
        for nurse in staff_nurses:
            try:
                await bookings._qualified_nurse(preloaded, None, request, nurse["_id"])  # type: ignore[arg-type]
            except ApiError:  # not qualified, lacks the skill, inactive
                continue
            if any((nurse["_id"], b.replace(tzinfo=None)) in taken for b in wanted[id(request)]):
                continue
            fit.append(nurse)
        choices[request["_id"]] = fit
    return choices
