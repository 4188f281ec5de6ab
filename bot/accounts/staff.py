"""Staff accounts: username, Argon2id password hash, one role bound to one institution.

Argon2 is memory-hard on purpose (about 0.1–0.2 s of CPU each): hashing and verifying run in a
worker thread, at most ``MAX_CONCURRENT_HASHES`` at a time, so a burst of logins never stalls the
event loop (argon2-cffi releases the GIL while it hashes). ``hash_password`` stays synchronous for
the CLI and the demo seed; request paths use ``hash_password_async``.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pymongo.asynchronous.database import AsyncDatabase

COLLECTION = "staff"

ADMIN, CENTRE_STAFF, CLINIC_STAFF, NURSE = "admin", "centre_staff", "clinic_staff", "nurse"
ROLES = (ADMIN, CENTRE_STAFF, CLINIC_STAFF, NURSE)
# who may look residents' settlements up, verify identities and record family grants at the counter
SETTLEMENT_DESK = (ADMIN, CENTRE_STAFF)
ROLE_LABELS = {ADMIN: "管理员", CENTRE_STAFF: "政务中心工作人员", CLINIC_STAFF: "医院护理部工作人员", NURSE: "护士"}
USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{2,31}")
MIN_PASSWORD = 10
MAX_CONCURRENT_HASHES = 2

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
    must_change_password: bool = False  # set by an admin's reset: a new password before anything else

    def may_act_for(self, institution_id: str) -> bool:
        return self.institution_id is None or self.institution_id == institution_id

    @property
    def at_settlement_desk(self) -> bool:
        """May read residents' settlements and verify identities (``SETTLEMENT_DESK``)."""
        return self.role in SETTLEMENT_DESK


_hashing: asyncio.Semaphore | None = None


def _slots() -> asyncio.Semaphore:
    global _hashing
    if _hashing is None:
        _hashing = asyncio.Semaphore(MAX_CONCURRENT_HASHES)
    return _hashing


def hash_password(password: str) -> str:
    return _hasher.hash(password)


async def hash_password_async(password: str) -> str:
    async with _slots():
        return await asyncio.to_thread(_hasher.hash, password)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """Off the event loop, bounded; an unknown user costs the same as a wrong password."""
    async with _slots():
        return await asyncio.to_thread(_verify, stored or _DUMMY_HASH, password) and stored is not None


def password_problem(password: str, username: str = "") -> str | None:
    """Why ``password`` is not acceptable as a new staff password (Chinese), or None."""
    if len(password) < MIN_PASSWORD or len(password) > 256:
        return f"密码长度应为 {MIN_PASSWORD} 到 256 个字符"
    if username and username.lower() in password.lower():
        return "密码不能包含用户名"
    if len(set(password)) < 4:
        return "密码过于简单，请混用字母、数字和符号"
    return None


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
    """The member if ``password`` is theirs; the hash is checked in a worker thread (see above).
    Callers on a request path go through ``bot.accounts.login.sign_in`` (throttled, logged)."""
    document = await db[COLLECTION].find_one({"_id": username, "active": True})
    if not await verify_password(document["password_hash"] if document else None, password):
        return None
    return from_document(document) if document else None


class AccountError(ValueError):
    """A staff-account change that cannot be made; the message is Chinese, for the admin."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


async def create(db: AsyncDatabase, username: str, password: str, role: str, institution_id: str | None,
                 name: str, nurse_id: str | None = None, *, by: str) -> StaffMember:
    """A new account (never replaces one); the password must be changed at the first login."""
    if not USERNAME.fullmatch(username):
        raise AccountError("用户名应为 3 到 32 位小写字母、数字、点、横线或下划线，以字母或数字开头", "username")
    if role not in ROLES:
        raise AccountError("请选择角色", "role")
    if role != ADMIN and not institution_id:
        raise AccountError("除管理员外，账号必须属于一个机构", "institution_id")
    problem = password_problem(password, username)
    if problem:
        raise AccountError(problem, "password")
    now = datetime.now(UTC)
    document = {"_id": username, "password_hash": await hash_password_async(password), "role": role,
                "institution_id": institution_id or None, "name": name, "nurse_id": nurse_id or None,
                "active": True, "must_change_password": True, "created_at": now, "created_by": by,
                "updated_at": now}
    result = await db[COLLECTION].update_one({"_id": username}, {"$setOnInsert": document}, upsert=True)
    if result.upserted_id is None:
        raise AccountError("该用户名已存在", "username")
    return from_document(document)


async def update(db: AsyncDatabase, username: str, changes: dict[str, Any]) -> bool:
    """Change role, institution, name, nurse link or ``active`` (validated by the caller)."""
    allowed = {k: v for k, v in changes.items() if k in ("role", "institution_id", "name", "nurse_id", "active")}
    if "role" in allowed and allowed["role"] not in ROLES:
        raise AccountError("请选择角色", "role")
    result = await db[COLLECTION].update_one({"_id": username},
                                             {"$set": {**allowed, "updated_at": datetime.now(UTC)}})
    return result.matched_count == 1


async def set_password(db: AsyncDatabase, username: str, password: str, *, must_change: bool) -> None:
    """``must_change``: an admin's reset (the user sets their own at the next login)."""
    problem = password_problem(password, username)
    if problem:
        raise AccountError(problem, "password")
    await db[COLLECTION].update_one({"_id": username}, {"$set": {
        "password_hash": await hash_password_async(password), "must_change_password": must_change,
        "password_changed_at": datetime.now(UTC), "updated_at": datetime.now(UTC)}})


async def list_accounts(db: AsyncDatabase, *, institution_id: str | None = None, role: str | None = None,
                        active: bool | None = None, skip: int = 0, limit: int = 50) -> tuple[list[dict], int]:
    query: dict[str, Any] = {}
    if institution_id:
        query["institution_id"] = institution_id
    if role:
        query["role"] = role
    if active is not None:
        query["active"] = active
    found = await db[COLLECTION].find(query, {"password_hash": 0}).sort("_id", 1).skip(skip).limit(limit).to_list(None)
    return found, await db[COLLECTION].count_documents(query)


async def get_document(db: AsyncDatabase, username: str) -> dict[str, Any] | None:
    return await db[COLLECTION].find_one({"_id": username}, {"password_hash": 0})


async def find(db: AsyncDatabase, username: str) -> StaffMember | None:
    document = await db[COLLECTION].find_one({"_id": username, "active": True})
    return from_document(document) if document else None


def from_document(document: dict) -> StaffMember:
    return StaffMember(username=document["_id"], role=document["role"],
                       institution_id=document.get("institution_id"), name=document.get("name", ""),
                       nurse_id=document.get("nurse_id"),
                       must_change_password=bool(document.get("must_change_password")))
