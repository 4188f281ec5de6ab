import io
import json
import logging

import pytest

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
