"""The service catalogue: nursing items (网约护士) and the centre's extended-hours matters.

Reference data lives in ``scheduling/data/catalogue.yaml``; ``load_catalogue`` reads and checks it,
``upsert_services`` stores it in ``services`` with the institutions that offer each item.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from bot.db import declare_indexes

COLLECTION = "services"
DATA_DIR = Path(__file__).parent / "data"
NURSING_CATEGORIES = ("老年护理", "母婴护理", "慢病管理", "康复护理", "长期照护")
CENTRE_CATEGORIES = ("医保", "企业")

declare_indexes(COLLECTION, IndexModel([("institution_ids", ASCENDING), ("active", ASCENDING),
                                        ("category", ASCENDING)], name="institution_active_category"))

_NURSING_FIELDS = ("category", "name", "duration_minutes", "service_fee", "visit_fee", "eligibility",
                   "preparation", "contraindications")
_CENTRE_FIELDS = ("category", "name", "duration_minutes", "materials", "notes")


@dataclass(frozen=True)
class Catalogue:
    price_note: str
    centre_note: str
    items: tuple[dict[str, Any], ...]  # service documents without institution_ids

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [item for item in self.items if item["kind"] == kind]


@cache
def load_catalogue(path: Path = DATA_DIR / "catalogue.yaml") -> Catalogue:
    """Read and check the catalogue file; ``ValueError`` names the first bad item."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    items: list[dict[str, Any]] = []
    for raw in data.get("nursing") or ():
        _require(raw, _NURSING_FIELDS)
        if raw["category"] not in NURSING_CATEGORIES:
            raise ValueError(f"{raw['id']}: unknown category {raw['category']}")
        items.append({"_id": raw["id"], "kind": "nursing", **{k: raw[k] for k in _NURSING_FIELDS},
                      "service_fee": _money(raw, "service_fee"), "visit_fee": _money(raw, "visit_fee"),
                      "price_note": data["price_note"], "active": True})
    for raw in data.get("centre") or ():
        _require(raw, _CENTRE_FIELDS)
        if raw["category"] not in CENTRE_CATEGORIES:
            raise ValueError(f"{raw['id']}: unknown category {raw['category']}")
        items.append({"_id": raw["id"], "kind": "centre", **{k: raw[k] for k in _CENTRE_FIELDS},
                      "service_fee": "0.00", "visit_fee": "0.00", "price_note": data["centre_note"],
                      "active": True})
    ids = [item["_id"] for item in items]
    if len(ids) != len(set(ids)):
        raise ValueError("duplicate service ids in the catalogue")
    return Catalogue(data["price_note"], data["centre_note"], tuple(items))


def _require(raw: dict[str, Any], fields: tuple[str, ...]) -> None:
    missing = [f for f in ("id", *fields) if raw.get(f) in (None, "")]
    if missing:
        raise ValueError(f"{raw.get('id', '?')}: missing {', '.join(missing)}")
    if not isinstance(raw["duration_minutes"], int) or raw["duration_minutes"] <= 0:
        raise ValueError(f"{raw['id']}: duration_minutes must be a positive integer")


def _money(raw: dict[str, Any], key: str) -> str:
    try:
        value = Decimal(str(raw[key]))
    except InvalidOperation:
        raise ValueError(f"{raw['id']}: {key} is not a decimal") from None
    if value < 0 or value != value.quantize(Decimal("0.01")):
        raise ValueError(f"{raw['id']}: {key} must be a non-negative amount in yuan with 2 decimals")
    return f"{value:.2f}"


async def upsert_services(db: AsyncDatabase, offered_by: dict[str, list[str]]) -> int:
    """Store every catalogue item; ``offered_by`` maps a service id to the institutions offering it
    (items offered by nobody are stored inactive)."""
    operations = []
    for item in load_catalogue().items:
        institution_ids = sorted(offered_by.get(item["_id"], []))
        document = {**item, "institution_ids": institution_ids, "active": bool(institution_ids)}
        operations.append(UpdateOne({"_id": item["_id"]}, {"$set": {k: v for k, v in document.items()
                                                                    if k != "_id"}}, upsert=True))
    if operations:
        await db[COLLECTION].bulk_write(operations, ordered=False)
    return len(operations)


async def get_service(db: AsyncDatabase, service_id: str) -> dict[str, Any] | None:
    return await db[COLLECTION].find_one({"_id": service_id})


async def services_of(db: AsyncDatabase, institution_id: str) -> list[dict[str, Any]]:
    """Active services the institution offers, by category then name."""
    return await (db[COLLECTION].find({"institution_ids": institution_id, "active": True})
                  .sort([("category", ASCENDING), ("_id", ASCENDING)]).to_list(None))


def offered_by(service: dict[str, Any], institution_id: str) -> bool:
    return bool(service.get("active")) and institution_id in (service.get("institution_ids") or ())


def service_view(service: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {"id": service["_id"]}
    for key in ("kind", "category", "name", "duration_minutes", "service_fee", "visit_fee", "eligibility",
                "preparation", "contraindications", "materials", "notes", "price_note"):
        if key in service:
            view[key] = service[key]
    if service.get("kind") == "nursing":
        view["total_fee"] = f"{Decimal(service['service_fee']) + Decimal(service['visit_fee']):.2f}"
    return view
