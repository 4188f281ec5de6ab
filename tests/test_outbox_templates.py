"""The notification templates file: validated at start, WeChat field rules, truncation, texts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from bot.notify.templates import (
    DEFAULT_PATH,
    KINDS,
    SAMPLE_PAYLOADS,
    TemplateBook,
    TemplateError,
    fit,
    parse_template_ids,
)
from bot.wechat.template_fields import problems


def test_shipped_file_covers_every_kind_and_renders_within_wechat_rules():
    book = TemplateBook.load(template_ids=",".join(f"{kind}=TPL-{n}" for n, kind in enumerate(KINDS)))
    for kind in KINDS:
        rendered = book.render(kind, SAMPLE_PAYLOADS.get(kind) or SAMPLE_PAYLOADS["booking"])
        assert rendered.problem is None and rendered.template_id and problems(rendered.data) == []
        assert rendered.title and rendered.text and "{" not in rendered.text


def test_settlement_text_reads_like_the_spec():
    book = TemplateBook.load()
    payload = {**SAMPLE_PAYLOADS["settlement_status"], "status": "settled", "reason": None,
               "amounts": {"total": "1234.56", "basic_insurance": "800", "critical_illness": "100",
                           "medical_assistance": "50", "other_funds": "0", "self_pay": "284.56"}}
    text = book.render("settlement_status", payload, require_template=False).text
    assert ("结算状态：已结算；总费用 1,234.56 元；统筹支付 800.00 元；大病保险 100.00 元；医疗救助 50.00 元；"
            "其他基金 0.00 元；个人自付 284.56 元。") in text
    assert "原因" not in text


def test_booking_payload_of_the_booking_engineers_renders():
    from scheduling.booking_base import notification_payload

    booking = {"_id": "bk-1", "kind": "nursing", "service_name": "PICC 导管维护", "institution_name": "金华市中心医院",
               "start": datetime(2026, 11, 25, 1, 30, tzinfo=UTC), "status": "confirmed",
               "nurse": {"name": "吕丽"}}
    book = TemplateBook.load(template_ids="booking_confirmed=TPL-B")
    rendered = book.render("booking_confirmed", notification_payload(booking))
    assert rendered.problem is None
    assert rendered.data["time3"] == "2026年11月25日 09:30" and rendered.data["thing5"] == "服务护士：吕丽"
    assert "2026-11-25 09:30" in rendered.text and rendered.page == "pages/bookings/detail?id=bk-1"


@pytest.mark.parametrize("kind, value, expected", [
    ("thing", "一二三四五六七八九十一二三四五六七八九十", "一二三四五六七八九十一二三四五六七八九十"),
    ("thing", "一二三四五六七八九十一二三四五六七八九十一", "一二三四五六七八九十一二三四五六七八九…"),
    ("thing", "换行\n和  空格", "换行 和 空格"),
    ("phrase", "审核未通过了", "审核未通过"),
    ("phrase", "已结算!", "已结算"),
    ("name", "欧阳修文欧阳修文欧阳修文", "欧阳修文欧阳修文欧阳"),
    ("character_string", "A" * 40, "A" * 40),  # never cut: a cut identifier would be wrong
])
def test_truncation_rules(kind, value, expected):
    assert fit(kind, value) == expected


def test_a_value_that_cannot_fit_skips_the_subscribe_message():
    book = TemplateBook.load(template_ids="settlement_status=TPL-S")
    rendered = book.render("settlement_status", {**SAMPLE_PAYLOADS["settlement_status"],
                                                 "amounts": {"total": "123456789012.00"}})
    assert rendered.template_id is None and "amount3" in rendered.problem
    assert "123,456,789,012.00" in rendered.text  # the text channels still carry it


def test_no_template_id_means_no_subscribe_message():
    rendered = TemplateBook.load().render("settlement_status", SAMPLE_PAYLOADS["settlement_status"])
    assert rendered.template_id is None and rendered.problem == "no template id"


def test_unknown_kind_gets_a_generic_text():
    rendered = TemplateBook.load().render("something_new", {})
    assert rendered.template_id is None and "新通知" in rendered.text


def test_template_ids_setting():
    assert parse_template_ids("settlement_status=abc_DEF-1, booking_reminder=x") == {
        "settlement_status": "abc_DEF-1", "booking_reminder": "x"}
    assert parse_template_ids(None) == {}
    for wrong in ("settlement_status", "nope=abc", "settlement_status=has space"):
        with pytest.raises(TemplateError):
            parse_template_ids(wrong)


def _broken_file(tmp_path: Path, change) -> Path:
    document = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    change(document["kinds"])
    path = tmp_path / "templates.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize("change, words", [
    (lambda k: k.pop("waitlist_offer"), "waitlist_offer"),
    (lambda k: k["settlement_status"]["fields"].update({"thing9": {"type": "phrase", "value": "x"}}), "thing9"),
    (lambda k: k["settlement_status"]["fields"].update({"colour1": {"type": "colour", "value": "x"}}), "colour1"),
    (lambda k: k["booking_confirmed"].update({"text": "{settlement_id}"}), "settlement_id"),
    (lambda k: k["booking_confirmed"].update({"text": "{service_name!r}"}), "占位符"),
    (lambda k: k["settlement_status"]["fields"].update({"phrase2": {"type": "phrase", "value": "abc"}}), "phrase2"),
])
def test_mistakes_in_the_file_are_reported_at_load(tmp_path, change, words):
    with pytest.raises(TemplateError) as error:
        TemplateBook.load(_broken_file(tmp_path, change))
    assert words in str(error.value)
