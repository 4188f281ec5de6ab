"""Verification of an insured-identity claim (pure, no I/O): the WeChat face-verification answer,
the WeChat error codes of that call, the development verifier and the counter's one-time codes.

WeChat face verification (微信人脸核身): the mini-program runs ``wx.startFacialRecognitionVerify``
with the claimed name and ID number and hands us its ``verify_result``; the handler asks WeChat
(``cityservice/face/identify/getinfo``, in ``bot.wechat.api``) and passes the answer here as plain
data. The claim is accepted only when ``identify_ret`` is 0, ``identify_time`` is at most
``max_age`` old, the answer's ``openid`` is the caller's, and ``id_card_number_md5`` and
``name_utf8_md5`` are the MD5 of the claimed number (upper-case X) and name (UTF-8). Single use is
enforced by the store (a unique ``_id`` = ``result_hash(verify_result)`` in ``face_verify_results``).

Every refusal has a stable code (``VerificationRefusedError.code``) and a Chinese message for the resident.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter

from bot.settlements.id_numbers import RESIDENT_ID, IdNumber

DEV_VERIFY_RESULT = "dev-verified"
CLOCK_SKEW = timedelta(minutes=2)

VERIFICATION_FAILURES = Counter(
    "identity_verification_failures_total",
    "VerificationRefusedError insured-identity verifications by method and refusal code", ["method", "code"],
)

# stable refusal codes
FAILED = "face_verify_failed"
EXPIRED = "face_verify_expired"
REPLAYED = "face_verify_replayed"
WRONG_ACCOUNT = "face_verify_wrong_account"
MISMATCH = "face_verify_mismatch"
INVALID = "face_verify_invalid"
NEEDS_ID_CARD = "face_verify_needs_id_card"
UNAVAILABLE = "face_verify_unavailable"
DEV_DISABLED = "dev_verifier_disabled"

MESSAGES = {
    FAILED: "人脸核身未通过，请在光线充足处重新进行人脸核身",
    EXPIRED: "人脸核身结果已过期，请重新进行人脸核身",
    REPLAYED: "该人脸核身结果已使用过，请重新进行人脸核身",
    WRONG_ACCOUNT: "该人脸核身结果不属于当前微信账号",
    MISMATCH: "人脸核身的姓名或身份证号与填写的参保人不一致",
    INVALID: "人脸核身结果无效，请重新进行人脸核身",
    NEEDS_ID_CARD: "人脸核身只适用于 18 位居民身份证号码；医保编号请到服务大厅窗口核验",
    UNAVAILABLE: "暂时无法向微信查询人脸核身结果，请稍后再试",
    DEV_DISABLED: "开发环境核验（dev-verified）在正式环境不可用",
}

# WeChat errcodes of cityservice/face/identify/getinfo → our refusal codes
WECHAT_ERRCODES = {
    84001: INVALID,  # invalid verify_result / identify id
    84002: EXPIRED,  # the user's verification data expired
    84003: REPLAYED,  # the result was already used / queried
    40003: WRONG_ACCOUNT,  # invalid openid
}


class VerificationRefusedError(Exception):
    """A verification that did not pass; ``code`` is stable, ``message`` Chinese."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.message = message or MESSAGES.get(code, "核验未通过")


@dataclass(frozen=True)
class Verification:
    """An accepted proof of identity, recorded on the binding."""

    method: str  # identities.FACE, COUNTER or DEVELOPMENT
    details: dict[str, Any] = field(default_factory=dict)
    result_hash: str | None = None  # the single-use face-verification result

    def record(self, now: datetime) -> dict[str, Any]:
        return {"method": self.method, "at": now, **self.details}


def result_hash(verify_result: str) -> str:
    return hashlib.sha256(f"face-verify:{verify_result}".encode()).hexdigest()


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def refusal_for_wechat_error(errcode: int, transient: bool) -> VerificationRefusedError:
    if errcode in WECHAT_ERRCODES:
        return VerificationRefusedError(WECHAT_ERRCODES[errcode])
    return VerificationRefusedError(UNAVAILABLE)


def require_face_claim(number: IdNumber) -> None:
    if number.kind != RESIDENT_ID:
        raise VerificationRefusedError(NEEDS_ID_CARD)


def check_face_result(
    answer: Mapping[str, Any], *, openid: str, number: IdNumber, name: str, now: datetime, max_age: timedelta,
) -> None:
    """Accept (return) or raise ``VerificationRefusedError``; ``answer`` is WeChat's JSON as it came."""
    require_face_claim(number)
    if answer.get("identify_ret") != 0:
        raise VerificationRefusedError(FAILED)
    if answer.get("openid") != openid:
        raise VerificationRefusedError(WRONG_ACCOUNT)
    identified = answer.get("identify_time")
    if not isinstance(identified, int) or isinstance(identified, bool):
        raise VerificationRefusedError(INVALID)
    try:
        at = datetime.fromtimestamp(identified, UTC)
    except (OverflowError, OSError, ValueError):
        raise VerificationRefusedError(INVALID) from None
    if at > now + CLOCK_SKEW:
        raise VerificationRefusedError(INVALID)
    if now - at > max_age:
        raise VerificationRefusedError(EXPIRED)
    number_md5, name_md5 = answer.get("id_card_number_md5"), answer.get("name_utf8_md5")
    if not isinstance(number_md5, str) or not isinstance(name_md5, str):
        raise VerificationRefusedError(INVALID)
    if (not secrets.compare_digest(number_md5.lower(), md5_hex(number.value.upper()))
            or not secrets.compare_digest(name_md5.lower(), md5_hex(name))):
        raise VerificationRefusedError(MISMATCH)


def face_verification(verify_result: str, answer: Mapping[str, Any]) -> Verification:
    identified = datetime.fromtimestamp(answer["identify_time"], UTC)
    return Verification("wechat_face", {"identify_time": identified}, result_hash(verify_result))


# --- the counter's one-time code -----------------------------------------------------------------

CODE_ALPHABET = "23456789"  # digits only, no 0/1: read aloud at the counter
CODE_LENGTH = 8
CODE_LIFETIME = timedelta(minutes=10)


def new_counter_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def code_hash(code: str) -> str:
    return hashlib.sha256(f"counter-code:{code}".encode()).hexdigest()
