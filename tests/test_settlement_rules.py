"""Pure rules of settlements: ID numbers, event validation, transitions, signatures."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from bot.settlements import id_numbers
from bot.settlements.id_numbers import (
    INSURANCE_NUMBER,
    RESIDENT_ID,
    InvalidIdNumberError,
    check_character,
    identity_hash,
    parse,
)
from bot.settlements.rules import (
    EventInvalidError,
    TransitionRefusedError,
    decide,
    format_yuan,
    parse_event,
    reachable,
)
from bot.signatures import SignatureRejectedError, sign, verify
from tests.settlement_support import event, resident_id


def test_known_valid_resident_id_and_checksum():
    number = parse("11010519491231002x")  # the textbook GB 11643 example, lower-case x
    assert number.kind == RESIDENT_ID and number.value == "11010519491231002X"
    assert number.masked == "110105********002X"
    assert "11010519491231002X" not in repr(number)


@pytest.mark.parametrize("raw, message", [
    ("110105194912310021", "校验位"),  # wrong check character
    ("110105194902300026", "出生日期"),  # 30 February
    ("11010519491231002", "18 位"),
    ("", "请填写"),
    ("abc", "18 位身份证号码"),
])
def test_invalid_resident_ids(raw, message):
    with pytest.raises(InvalidIdNumberError) as error:
        parse(raw)
    assert message in error.value.message


def test_future_birth_date_is_refused():
    first17 = "33070220990101001"
    with pytest.raises(InvalidIdNumberError):
        parse(first17 + id_numbers.check_character(first17), today=date(2026, 1, 1))


def test_insurance_number_format():
    number = parse(" yb 3307 0200 0123 456 ")
    assert number.kind == INSURANCE_NUMBER and number.value == "YB330702000123456"
    assert number.masked == "YB33*********3456"
    with pytest.raises(InvalidIdNumberError):
        parse("YB123")  # too short
    with pytest.raises(InvalidIdNumberError):
        parse("1234567890123")  # digits only: neither an ID nor a 医保编号


def test_identity_hash_is_keyed_and_stable():
    number = parse(resident_id(7))
    first = identity_hash(b"k" * 32, number)
    assert first == identity_hash(b"k" * 32, parse(resident_id(7)))
    assert first != identity_hash(b"x" * 32, number)
    assert number.value not in first and len(first) == 64


def test_parse_event_accepts_a_complete_event():
    parsed = parse_event(event(status="needs_materials"))
    assert parsed.amounts["self_pay"] == Decimal("284.56")
    assert parsed.occurred_at.isoformat() == "2026-11-20T01:30:00+00:00"
    assert parsed.reason == "缺少出院小结"


@pytest.mark.parametrize("change, field", [
    ({"event_id": ""}, "event_id"),
    ({"settlement_id": "has space"}, "settlement_id"),
    ({"sequence": "3"}, "sequence"),
    ({"sequence": True}, "sequence"),
    ({"status": "done"}, "status"),
    ({"occurred_at": "2026-11-20T09:30:00"}, "occurred_at"),  # no time zone
    ({"insured_id_number": "110105194912310021"}, "insured_id_number"),
    ({"institution": {"name": ""}}, "institution.name"),
    ({"visit": {"type": "home", "admitted_on": "2026-11-10"}}, "visit.type"),
    ({"visit": {"type": "inpatient", "admitted_on": "2026-02-30"}}, "visit.admitted_on"),
    ({"visit": {"type": "inpatient", "admitted_on": "2026-11-10", "discharged_on": "2026-11-01"}},
     "visit.discharged_on"),
    ({"amounts": {"total": "1", "basic_insurance": "1"}}, "amounts.critical_illness"),
    ({"amounts": {"total": "1.001", "basic_insurance": "1", "critical_illness": "0", "medical_assistance": "0",
                  "other_funds": "0", "self_pay": "0"}}, "amounts.total"),
    ({"amounts": {"total": "-1", "basic_insurance": "0", "critical_illness": "0", "medical_assistance": "0",
                  "other_funds": "0", "self_pay": "0"}}, "amounts.total"),
])
def test_parse_event_names_the_field_at_fault(change, field):
    with pytest.raises(EventInvalidError) as error:
        parse_event({**event(), **change})
    assert error.value.field == field


def test_amounts_must_add_up_exactly():
    body = event()
    body["amounts"]["self_pay"] = "284.55"  # one cent short
    with pytest.raises(EventInvalidError) as error:
        parse_event(body)
    assert error.value.field == "amounts.total" and "不一致" in error.value.message


def test_rejection_needs_a_reason():
    body = event(status="rejected")
    del body["reason"]
    with pytest.raises(EventInvalidError) as error:
        parse_event(body)
    assert error.value.field == "reason"


def test_reachability_of_statuses():
    assert reachable("submitted", "paid")
    assert reachable("needs_materials", "approved")
    assert reachable("reviewing", "reviewing")
    assert not reachable("paid", "reviewing")
    assert not reachable("rejected", "approved")
    assert not reachable("submitted", "settled")


def test_decide():
    assert decide(None, None, "settled", 5).apply
    late = decide("approved", 4, "reviewing", 2)
    assert not late.apply and late.late and not late.status_changed
    assert decide("reviewing", 2, "reviewing", 3) == decide("reviewing", 2, "reviewing", 3)
    assert not decide("reviewing", 2, "reviewing", 3).status_changed
    assert decide("submitted", 1, "approved", 3).status_changed  # a skipped step is fine
    with pytest.raises(TransitionRefusedError):
        decide("paid", 4, "reviewing", 5)


def test_format_yuan():
    assert format_yuan("1234.5") == "1,234.50"
    assert format_yuan(Decimal("0")) == "0.00"


def test_signature_verification():
    body = b'{"a": 1}'
    good = sign("s3cret", 1_800_000_000, body)
    verify("s3cret", "1800000000", good, body, now=1_800_000_100)
    for timestamp, signature, now, code in [
        ("1800000000", good, 1_800_000_301, "timestamp_stale"),
        ("1800000000", good, 1_799_999_699, "timestamp_stale"),
        ("1800000000", good.upper()[:-1] + "0", 1_800_000_000, "signature_invalid"),
        ("1800000000", sign("other", 1_800_000_000, body), 1_800_000_000, "signature_invalid"),
        ("18e8", good, 1_800_000_000, "timestamp_invalid"),
        (None, good, 1_800_000_000, "signature_missing"),
    ]:
        with pytest.raises(SignatureRejectedError) as error:
            verify("s3cret", timestamp, signature, body, now=now)
        assert error.value.code == code
    with pytest.raises(SignatureRejectedError):
        verify("s3cret", "1800000000", good, body + b" ", now=1_800_000_000)  # body changed


def _answer(number: str, name: str, **overrides):
    import hashlib
    import time

    return {"errcode": 0, "identify_ret": 0, "identify_time": int(time.time()) - 30, "openid": "me",
            "id_card_number_md5": hashlib.md5(number.encode()).hexdigest().upper(),  # WeChat's case does not matter
            "name_utf8_md5": hashlib.md5(name.encode()).hexdigest(), **overrides}


def test_face_result_check_compares_upper_case_x_and_utf8_name():
    from datetime import timedelta

    from bot.settlements.verification import VerificationRefusedError, check_face_result

    first17 = next(f"11010519491231{n:03d}" for n in range(1000) if check_character(f"11010519491231{n:03d}") == "X")
    number = parse(first17 + "x")  # typed in lower case
    now = datetime.now(UTC)
    check_face_result(_answer(first17 + "X", "欧阳修文"), openid="me", number=number, name="欧阳修文", now=now,
                      max_age=timedelta(minutes=10))
    for answer, code in ((_answer(first17 + "X", "欧阳修"), "face_verify_mismatch"),
                         (_answer(first17 + "X", "欧阳修文", identify_time=int(now.timestamp()) - 601),
                          "face_verify_expired"),
                         (_answer(first17 + "X", "欧阳修文", identify_time=int(now.timestamp()) + 3600),
                          "face_verify_invalid"),
                         (_answer(first17 + "X", "欧阳修文", identify_time="soon"), "face_verify_invalid"),
                         (_answer(first17 + "X", "欧阳修文", openid="other"), "face_verify_wrong_account"),
                         (_answer(first17 + "X", "欧阳修文", identify_ret=1), "face_verify_failed")):
        with pytest.raises(VerificationRefusedError) as refused:
            check_face_result(answer, openid="me", number=number, name="欧阳修文", now=now,
                              max_age=timedelta(minutes=10))
        assert refused.value.code == code and refused.value.message
