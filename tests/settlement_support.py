"""Helpers of the settlement and outbox tests: valid ID numbers, settlement-system events and the
signed webhook request the settlement system sends (its real wire format)."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp.test_utils import TestClient

from bot.settlements.id_numbers import check_character
from bot.signatures import sign

SECRET = "test-settlement-secret-0123456789"
IDENTITY_KEY = "test-identity-hash-key-0123456789abcdef"
WEBHOOK = "/api/v1/integrations/settlements/events"
BIND = "/api/v1/me/insured-identities"
DEV_VERIFIED = "dev-verified"


def resident_id(serial: int = 1, born: str = "19800101", region: str = "330702") -> str:
    """A valid 18-character resident ID number (GB 11643 check character)."""
    first17 = f"{region}{born}{serial % 1000:03d}"
    return first17 + check_character(first17)


def event(
    event_id: str = "ev-1",
    settlement_id: str = "JS-1",
    sequence: int = 1,
    status: str = "submitted",
    id_number: str | None = None,
    name: str = "张三",
    **overrides: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": event_id,
        "settlement_id": settlement_id,
        "sequence": sequence,
        "status": status,
        "occurred_at": "2026-11-20T09:30:00+08:00",
        "insured_id_number": id_number or resident_id(),
        "insured_name": name,
        "institution": {"name": "金华市中心医院"},
        "visit": {"type": "inpatient", "admitted_on": "2026-11-10", "discharged_on": "2026-11-20"},
        "amounts": {"total": "1234.56", "basic_insurance": "800.00", "critical_illness": "100.00",
                    "medical_assistance": "50.00", "other_funds": "0.00", "self_pay": "284.56"},
    }
    if status in ("rejected", "needs_materials"):
        body["reason"] = "缺少出院小结"
    body.update(overrides)
    return body


def signed_headers(raw: bytes, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {"X-Timestamp": stamp, "X-Signature": sign(secret, stamp, raw), "Content-Type": "application/json"}


async def post_event(client: TestClient, body: dict[str, Any] | bytes, **kwargs: Any) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return await client.post(WEBHOOK, data=raw, headers=signed_headers(raw, **kwargs))


async def bind(client: TestClient, headers: dict[str, str], id_number: str, name: str = "张三",
               verify_result: str | None = DEV_VERIFIED) -> Any:
    """POST a binding (verified by the development verifier unless ``verify_result`` says otherwise)."""
    body: dict[str, Any] = {"name": name, "id_number": id_number}
    if verify_result is not None:
        body["verify_result"] = verify_result
    return await client.post(BIND, json=body, headers=headers)
