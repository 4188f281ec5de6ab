import io
import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.logs import ConsoleFormatter, JsonFormatter
from bot.masking import mask_id_number, mask_name, mask_phone, mask_text


def test_phone():
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("") == ""
    assert mask_phone("5678") == "****"


def test_id_number_keeps_first_6_and_last_4():
    assert mask_id_number("11010519491231002X") == "110105********002X"
    assert mask_id_number("110105194912310021") == "110105********0021"


@pytest.mark.parametrize(("name", "masked"), [("张三", "张*"), ("张三丰", "张**"), ("欧阳修文", "欧阳**"),
                                              ("欧阳", "欧*"), ("李", "李"), ("", "")])
def test_name(name, masked):
    assert mask_name(name) == masked


def test_free_text():
    text = "家属 13812345678 为 110105194912310021 预约，备用 15900001111"
    assert mask_text(text) == "家属 138****5678 为 110105********0021 预约，备用 159****1111"
    assert mask_text("订单号 202611230001") == "订单号 202611230001"  # not a phone: 12 digits


@pytest.mark.parametrize("formatter", [JsonFormatter(), ConsoleFormatter()])
def test_log_lines_are_masked(formatter):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("test.masking")
    logger.addHandler(handler)
    try:
        logger.warning("call 13812345678", extra={"id_number": "110105194912310021"})
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "13812345678" not in output and "110105194912310021" not in output
    assert "138****5678" in output and "110105********0021" in output
    if isinstance(formatter, JsonFormatter):
        assert json.loads(output)["level"] == "WARNING"


# --- issue 18, finding 6: the formats people actually write --------------------------------------------

_FULL_WIDTH = str.maketrans("0123456789Xx", "０１２３４５６７８９Ｘｘ")
_SEPARATORS = ["", " ", "-", "－", "\u3000", "—", "\u00a0"]


@pytest.mark.parametrize(("text", "masked"), [
    ("电话１３９１２３４５６７８请回电", "电话139****5678请回电"),
    ("手机139-1234-5678", "手机139****5678"),
    ("手机 139 1234 5678。", "手机 139****5678。"),
    ("身份证330702 19500101 0025，", "身份证330702********0025，"),
    ("身份证３３０７０２１９５００１０１００２Ｘ", "身份证330702********002X"),
    ("号码 +86 139-1234-5678", "号码 139****5678"),
])
def test_formats(text, masked):
    assert mask_text(text) == masked


def test_field_masks_normalise_too():
    assert mask_phone("139-1234-5678") == "139****5678"
    assert mask_phone("１３９１２３４５６７８") == "139****5678"
    assert mask_id_number("330702 19500101 0025") == "330702********0025"


def _written(number: str, draw: st.DrawFn) -> str:
    """``number`` as a person might type it: some characters full-width, separators between groups."""
    out = []
    for index, ch in enumerate(number):
        if index and draw(st.booleans()):
            out.append(draw(st.sampled_from(_SEPARATORS)))
        out.append(ch.translate(_FULL_WIDTH) if draw(st.booleans()) else ch)
    return "".join(out)


_CHINESE = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), min_size=1, max_size=12)
_DIGITS = st.text(st.sampled_from("0123456789"), min_size=1, max_size=1)


@st.composite
def phones(draw: st.DrawFn) -> str:
    return "1" + draw(st.sampled_from("3456789")) + "".join(draw(_DIGITS) for _ in range(9))


@st.composite
def id_numbers(draw: st.DrawFn) -> str:
    return "".join(draw(_DIGITS) for _ in range(17)) + draw(st.sampled_from("0123456789Xx"))


@st.composite
def texts_with_numbers(draw: st.DrawFn) -> tuple[str, list[str]]:
    numbers = draw(st.lists(st.one_of(phones(), id_numbers()), min_size=1, max_size=3))
    parts = [draw(_CHINESE)]
    for number in numbers:
        parts += [_written(number, draw), draw(_CHINESE)]
    return "".join(parts), numbers


@settings(max_examples=300, deadline=None, derandomize=True)
@given(texts_with_numbers())
def test_no_phone_or_id_number_survives_masking(case):
    text, numbers = case
    masked = mask_text(text)
    digits = "".join(ch for ch in masked if ch.isdigit() or ch in "Xx*")
    for number in numbers:
        assert number not in digits, (text, masked)
        kept = (number[:3], number[-4:]) if len(number) == 11 else (number[:6], number[-4:])
        hidden = "****" if len(number) == 11 else "********"
        assert f"{kept[0]}{hidden}{kept[1]}" in masked, (text, masked)
