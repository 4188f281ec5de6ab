"""Staff accounts: username, Argon2id password hash, one role bound to one institution."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pymongo.asynchronous.database import AsyncDatabase

COLLECTION = "staff"

ADMIN, CENTRE_STAFF, CLINIC_STAFF, NURSE = "admin", "centre_staff", "clinic_staff", "nurse"
ROLES = (ADMIN, CENTRE_STAFF, CLINIC_STAFF, NURSE)
# who may look residents' settlements up, verify identities and record family grants at the counter
SETTLEMENT_DESK = (ADMIN, CENTRE_STAFF)

_hasher = PasswordHasher()  # Argon2id, memory-hard, library defaults (RFC 9106 low-memory profile)
# Verifying against this keeps the time of "no such user" equal to "wrong password".
_DUMMY_HASH = _hasher.hash("not-a-real-password")


@dataclass(frozen=True)
class StaffMember:
    username: str
    role: str
    institution_id: str | None  # None only for an admin of every institution
    name: str = ""
    nurse_id: str | None = None  # set for role nurse

    def may_act_for(self, institution_id: str) -> bool:
        return self.institution_id is None or self.institution_id == institution_id

    @property
    def at_settlement_desk(self) -> bool:
        """May read residents' settlements and verify identities (``SETTLEMENT_DESK``)."""
        return self.role in SETTLEMENT_DESK


def hash_password(password: str) -> str:
    return _hasher.hash(password)


async def create_or_update(
    db: AsyncDatabase, username: str, password: str, role: str, institution_id: str | None,
    name: str = "", nurse_id: str | None = None,
) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role}")
    if (role == NURSE) != bool(nurse_id):
        # a nurse account is a nurse: it names the nurse record whose visits it sees and moves
        raise ValueError("a nurse account needs its nurse record (nurse_id), other roles have none")
    await db[COLLECTION].update_one(
        {"_id": username},
        {"$set": {"password_hash": hash_password(password), "role": role, "institution_id": institution_id,
                  "name": name, "nurse_id": nurse_id, "active": True, "updated_at": datetime.now(UTC)}},
        upsert=True,
    )


async def authenticate(db: AsyncDatabase, username: str, password: str) -> StaffMember | None:
    document = await db[COLLECTION].find_one({"_id": username, "active": True})
    try:
        _hasher.verify(document["password_hash"] if document else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return from_document(document) if document else None


async def find(db: AsyncDatabase, username: str) -> StaffMember | None:
    document = await db[COLLECTION].find_one({"_id": username, "active": True})
    return from_document(document) if document else None


def from_document(document: dict) -> StaffMember:
    return StaffMember(username=document["_id"], role=document["role"],
                       institution_id=document.get("institution_id"), name=document.get("name", ""),
                       nurse_id=document.get("nurse_id"))
