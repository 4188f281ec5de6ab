"""Read-only queries of the console's lists (filters, sort, paging), over the booking domain's
collections. Only reads live here; every change goes through the domain's functions
(``scheduling.bookings.transition`` …), which re-check every rule.

TODO(scheduling): these belong in ``scheduling/bookings.py`` as ``list_pending`` and friends; they
are here because that module is being changed in parallel."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from bot.errors import ApiError
from bot.notify import outbox
from scheduling import bookings, nurses
from scheduling import transitions as t
from scheduling.booking_base import BOOKINGS

PAGE_SIZE = 20
TODAY_VISIT_STATUSES = (t.CONFIRMED, t.ON_THE_WAY, t.IN_SERVICE, t.COMPLETED, t.NO_SHOW)


async def pending_requests(db: AsyncDatabase, institution_id: str, *, service_id: str | None = None,
                           skip: int = 0, limit: int = PAGE_SIZE) -> tuple[list[dict[str, Any]], int]:
    """Nursing requests awaiting review, the nearest review deadline first."""
    query: dict[str, Any] = {"institution_id": institution_id, "status": t.REQUESTED}
    if service_id:
        query["service_id"] = service_id
    found = await (db[BOOKINGS].find(query).sort([("review_deadline", ASCENDING), ("_id", ASCENDING)])
                   .skip(skip).limit(limit).to_list(None))
    return found, await db[BOOKINGS].count_documents(query)


async def visits_of_day(db: AsyncDatabase, institution_id: str, day: str, nurse_id: str | None = None,
                        ) -> list[dict[str, Any]]:
    query: dict[str, Any] = {"institution_id": institution_id, "date": day, "kind": t.NURSING,
                             "status": {"$in": list(TODAY_VISIT_STATUSES)}}
    if nurse_id:
        query["nurse_id"] = nurse_id
    return await db[BOOKINGS].find(query).sort("start", ASCENDING).to_list(500)


async def day_list(db: AsyncDatabase, institution_id: str, day: str, *, status: str | None = None,
                   skip: int = 0, limit: int = 200) -> tuple[list[dict[str, Any]], int]:
    """A day's bookings by slot time."""
    query: dict[str, Any] = {"institution_id": institution_id, "date": day}
    if status:
        query["status"] = status
    found = await (db[BOOKINGS].find(query, {"fingerprint": 0, "reminder_keys": 0})
                   .sort([("start", ASCENDING), ("created_at", ASCENDING)]).skip(skip).limit(limit).to_list(None))
    return found, await db[BOOKINGS].count_documents(query)


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


class _Nurses:
    """A read-only stand-in for the ``nurses`` collection holding the nurses already loaded, so the
    domain's own qualification check runs over a page of requests without a query per pair."""

    def __init__(self, documents: list[dict[str, Any]]) -> None:
        self._by_id = {n["_id"]: n for n in documents}

    async def find_one(self, query: dict[str, Any], session: Any = None) -> dict[str, Any] | None:
        return self._by_id.get(query.get("_id"))


class _PreloadedDb:
    def __init__(self, documents: list[dict[str, Any]]) -> None:
        self._nurses = _Nurses(documents)

    def __getitem__(self, name: str) -> Any:
        if name != nurses.COLLECTION:
            raise KeyError(name)
        return self._nurses


async def nurse_choices(db: AsyncDatabase, institution_id: str, requests: list[dict[str, Any]],
                        ) -> dict[str, list[dict[str, Any]]]:
    """For each request: the nurses the domain would accept for it (qualified, the item's skill,
    active) who are free for the whole visit. Confirmation re-checks both in its transaction."""
    staff_nurses = await db[nurses.COLLECTION].find({"institution_id": institution_id, "active": True}) \
        .sort("name", ASCENDING).to_list(None)
    preloaded = _PreloadedDb(staff_nurses)
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
