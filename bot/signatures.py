"""Signed webhooks (the settlement system's events), in the manner of Stripe's signatures:
``X-Timestamp`` is Unix seconds, ``X-Signature`` the lowercase hex HMAC-SHA256 over
``timestamp + "." + raw body`` with the shared secret. A timestamp more than ``TOLERANCE`` seconds
away from our clock is refused, so a captured request cannot be replayed later; within the window
the event id makes a replay harmless. Pure functions."""

from __future__ import annotations

import hashlib
import hmac
import re

TOLERANCE = 300
_TIMESTAMP = re.compile(r"^\d{1,12}$")


class SignatureRejectedError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float) -> None:
    """Raise ``SignatureRejectedError`` unless the request is signed with ``secret`` and fresh."""
    if not timestamp or not signature:
        raise SignatureRejectedError("signature_missing", "缺少 X-Timestamp 或 X-Signature 请求头")
    if not _TIMESTAMP.match(timestamp):
        raise SignatureRejectedError("timestamp_invalid", "X-Timestamp 必须是 Unix 时间戳（秒）")
    if abs(now - int(timestamp)) > TOLERANCE:
        raise SignatureRejectedError("timestamp_stale", "请求时间戳超出 5 分钟有效期，请检查时钟或重新签名")
    expected = sign(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode("utf-8", "replace")):
        raise SignatureRejectedError("signature_invalid", "签名校验失败")
