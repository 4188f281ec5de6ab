"""The async WeChat API client against the fake WeChat API: tokens, calls, errors, retries."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from bot.config import Settings
from bot.notify import grants
from bot.wechat.api import (
    ACCESS_TOKEN_EXPIRED,
    HTTP_STATUS_ERROR,
    NO_RETRY,
    NOT_CONFIGURED,
    TOKENS_COLLECTION,
    TRANSPORT_TIMEOUT,
    WECHAT,
    RetryPolicy,
    WeChatClient,
    WeChatPermanentError,
    WeChatTransientError,
)
from bot.wechat.template_fields import clip, problems
from tests.fakes.wechat_api import CUSTOM_SEND, STABLE_TOKEN, SUBSCRIBE_SEND, FakeWeChat

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)


def wechat_settings(settings: Settings, fake: FakeWeChat) -> Settings:
    return dataclasses.replace(settings, wechat_api_base=fake.base_url, wechat_app_id=fake.app_id,
                               wechat_app_secret=fake.secret)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def wechat(http, db, settings, fake_wechat) -> WeChatClient:
    return WeChatClient(http, db, wechat_settings(settings, fake_wechat), retry=FAST, timeout=1.0)


async def test_code2session_returns_openid_and_unionid(wechat, fake_wechat):
    fake_wechat.add_code("c1", "openid-1", unionid="union-1")
    session = await wechat.code2session("c1")
    assert session["openid"] == "openid-1" and session["unionid"] == "union-1" and session["session_key"]
    with pytest.raises(WeChatPermanentError) as used:
        await wechat.code2session("c1")
    assert used.value.errcode == 40163 and not used.value.transient
    with pytest.raises(WeChatPermanentError) as unknown:
        await wechat.code2session("nope")
    assert unknown.value.errcode == 40029


async def test_subscribe_message_uses_grant_then_43101(wechat, fake_wechat):
    fake_wechat.grant("openid-1", "TPL", 1)
    data = {"thing1": "门诊慢特病结算", "amount2": "¥128.50", "date3": "2025年3月1日 10:00"}
    await wechat.send_subscribe_message("openid-1", "TPL", data, page="pages/settlement/index",
                                        miniprogram_state="trial")
    sent = fake_wechat.sent_to("openid-1", "subscribe")
    assert sent[0]["data"] == data and sent[0]["page"] == "pages/settlement/index"
    assert sent[0]["miniprogram_state"] == "trial"
    body = next(r for r in fake_wechat.requests if r["path"] == SUBSCRIBE_SEND)["json"]
    assert body["data"]["thing1"] == {"value": "门诊慢特病结算"}
    with pytest.raises(WeChatPermanentError) as exc:
        await wechat.send_subscribe_message("openid-1", "TPL", data)
    assert exc.value.errcode == 43101


async def test_bad_template_value_is_refused_before_sending(wechat, fake_wechat):
    fake_wechat.grant("openid-1", "TPL", 1)
    with pytest.raises(WeChatPermanentError) as exc:
        await wechat.send_subscribe_message("openid-1", "TPL", {"thing1": "长" * 21})
    assert exc.value.errcode == 47003 and "thing1" in exc.value.errmsg
    assert not any(r["path"] == SUBSCRIBE_SEND for r in fake_wechat.requests)


async def test_fake_rejects_bad_field_and_openid_with_real_codes(wechat, fake_wechat):
    fake_wechat.define_template("TPL", ["thing1"])
    fake_wechat.grant("openid-1", "TPL", 1)
    with pytest.raises(WeChatPermanentError) as exc:
        await wechat.send_subscribe_message("openid-1", "TPL", {"thing2": "x"})
    assert exc.value.errcode == 47003
    with pytest.raises(WeChatPermanentError) as bad_openid:
        await wechat.send_subscribe_message("bad openid!", "TPL", {"thing1": "x"})
    assert bad_openid.value.errcode == 40003


async def test_custom_message_only_inside_window(wechat, fake_wechat):
    with pytest.raises(WeChatPermanentError) as exc:
        await wechat.send_custom_text("openid-1", "您好")
    assert exc.value.errcode == 45015
    fake_wechat.open_window("openid-1", quota=1)
    await wechat.send_custom_text("openid-1", "您好")
    assert fake_wechat.sent_to("openid-1", "custom")[0]["text"] == "您好"
    with pytest.raises(WeChatPermanentError) as quota:
        await wechat.send_custom_text("openid-1", "再次")
    assert quota.value.errcode == 45047


async def test_create_menu_sends_chinese_unescaped(wechat, fake_wechat):
    menu = {"button": [{"type": "click", "name": "使用帮助", "key": "MENU_HELP"}]}
    await wechat.create_menu(menu)
    assert fake_wechat.menus == [menu]
    assert fake_wechat.legacy_token_calls == 0


async def test_token_is_cached_in_database_and_never_from_cgi_bin_token(wechat, fake_wechat, db):
    fake_wechat.open_window("o1")
    for _ in range(3):
        await wechat.send_custom_text("o1", "hi")
    assert fake_wechat.stable_token_calls == 1
    assert fake_wechat.legacy_token_calls == 0
    request = next(r for r in fake_wechat.requests if r["path"] == STABLE_TOKEN)["json"]
    assert request == {"grant_type": "client_credential", "appid": fake_wechat.app_id,
                       "secret": fake_wechat.secret, "force_refresh": False}
    cached = await db[TOKENS_COLLECTION].find_one({"_id": fake_wechat.app_id})
    assert cached["access_token"] == fake_wechat.current_token


async def test_ten_concurrent_calls_with_expired_cached_token_fetch_once(wechat, fake_wechat, db):
    fake_wechat.open_window("o1", quota=20)
    await wechat.send_custom_text("o1", "warm")
    await db[TOKENS_COLLECTION].update_one({"_id": fake_wechat.app_id},
                                           {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}})
    fake_wechat.expire_all_tokens()
    calls_before = fake_wechat.stable_token_calls
    await asyncio.gather(*(wechat.send_custom_text("o1", f"m{i}") for i in range(10)))
    assert fake_wechat.stable_token_calls - calls_before == 1
    assert len(fake_wechat.sent_to("o1")) == 11


async def test_ten_concurrent_calls_rejected_with_42001_refresh_once(wechat, fake_wechat):
    fake_wechat.open_window("o1", quota=20)
    await wechat.send_custom_text("o1", "warm")
    fake_wechat.expire_all_tokens()  # our cache still believes the token is good
    await asyncio.gather(*(wechat.send_custom_text("o1", f"m{i}") for i in range(10)))
    assert fake_wechat.stable_token_calls == 2
    refresh = [r["json"] for r in fake_wechat.requests if r["path"] == STABLE_TOKEN][-1]
    assert refresh["force_refresh"] is True
    assert len(fake_wechat.sent_to("o1")) == 11


async def test_two_instances_share_one_refresh(http, db, settings, fake_wechat):
    configured = wechat_settings(settings, fake_wechat)
    first = WeChatClient(http, db, configured, retry=FAST, holder="instance-a")
    second = WeChatClient(http, db, configured, retry=FAST, holder="instance-b")
    fake_wechat.delay[STABLE_TOKEN] = 0.2  # make the refresh slow enough for both to want it
    tokens = await asyncio.gather(*(c.access_token() for c in (first, second) for _ in range(5)))
    assert len(set(tokens)) == 1
    assert fake_wechat.stable_token_calls == 1


@pytest.mark.parametrize("errcode", [40001, 40014, ACCESS_TOKEN_EXPIRED])
async def test_token_error_refreshes_once_and_retries_once(wechat, fake_wechat, errcode):
    fake_wechat.open_window("o1")
    fake_wechat.fail_next(CUSTOM_SEND, [errcode])
    await wechat.send_custom_text("o1", "hi")
    assert fake_wechat.stable_token_calls == 2
    assert len(fake_wechat.sent_to("o1")) == 1


async def test_transient_errors_are_retried_with_backoff(wechat, fake_wechat):
    fake_wechat.open_window("o1")
    fake_wechat.fail_next(CUSTOM_SEND, [-1, "http:500"])
    await wechat.send_custom_text("o1", "hi")
    assert len(fake_wechat.sent_to("o1")) == 1
    assert sum(r["path"] == CUSTOM_SEND for r in fake_wechat.requests) == 3


async def test_retries_are_bounded(wechat, fake_wechat):
    fake_wechat.open_window("o1")
    fake_wechat.fail_next(CUSTOM_SEND, [45009, 45009, 45009, 45009])
    with pytest.raises(WeChatTransientError) as exc:
        await wechat.send_custom_text("o1", "hi")
    assert exc.value.errcode == 45009 and exc.value.transient
    assert sum(r["path"] == CUSTOM_SEND for r in fake_wechat.requests) == 3


async def test_no_retry_policy_raises_at_once(wechat, fake_wechat):
    fake_wechat.open_window("o1")
    fake_wechat.fail_next(CUSTOM_SEND, ["http:502"])
    with pytest.raises(WeChatTransientError) as exc:
        await wechat.send_custom_text("o1", "hi", retry=NO_RETRY)
    assert exc.value.errcode == HTTP_STATUS_ERROR and exc.value.ambiguous
    assert sum(r["path"] == CUSTOM_SEND for r in fake_wechat.requests) == 1


async def test_permanent_errors_are_not_retried(wechat, fake_wechat):
    fake_wechat.open_window("o1")
    fake_wechat.fail_next(CUSTOM_SEND, [48001])
    with pytest.raises(WeChatPermanentError) as exc:
        await wechat.send_custom_text("o1", "hi")
    assert exc.value.errcode == 48001
    assert sum(r["path"] == CUSTOM_SEND for r in fake_wechat.requests) == 1


async def test_timeout_is_transient_and_ambiguous(http, db, settings, fake_wechat):
    client = WeChatClient(http, db, wechat_settings(settings, fake_wechat), retry=NO_RETRY, timeout=0.2)
    await client.access_token()
    fake_wechat.delay[CUSTOM_SEND] = 1.0
    fake_wechat.open_window("o1")
    with pytest.raises(WeChatTransientError) as exc:
        await client.send_custom_text("o1", "hi")
    assert exc.value.errcode == TRANSPORT_TIMEOUT and exc.value.ambiguous


async def test_unreachable_server_is_transient_not_ambiguous(http, db, settings):
    unreachable = dataclasses.replace(settings, wechat_api_base="http://127.0.0.1:9", wechat_app_id="wx1",
                                      wechat_app_secret="s")
    client = WeChatClient(http, db, unreachable, retry=NO_RETRY, timeout=1.0)
    with pytest.raises(WeChatTransientError) as exc:
        await client.send_custom_text("o1", "hi")
    assert not exc.value.ambiguous


async def test_not_configured_is_permanent(http, db, settings):
    client = WeChatClient(http, db, settings)
    with pytest.raises(WeChatPermanentError) as exc:
        await client.send_custom_text("o1", "hi")
    assert exc.value.errcode == NOT_CONFIGURED


async def test_app_holds_one_client(make_client, db):
    client = await make_client()
    assert isinstance(client.app[WECHAT], WeChatClient)


async def test_grants_are_taken_atomically(db):
    await grants.add_grant(db, "o1", "TPL", 3)
    taken = await asyncio.gather(*(grants.hold_grant(db, "o1", "TPL", f"n{i}", may_hold_already=False)
                                   for i in range(10)))
    assert taken.count(True) == 3
    assert await grants.available(db, "o1", "TPL") == 0
    await grants.release_grant(db, "o1", "TPL", f"n{taken.index(True)}", used=False)
    assert await grants.available(db, "o1", "TPL") == 1
    await grants.revoke_grants(db, "o1", "TPL", "reject")
    assert not await grants.hold_grant(db, "o1", "TPL", "n10", may_hold_already=False)
    assert not await grants.hold_grant(db, "nobody", "TPL", "n11", may_hold_already=False)


async def test_concurrent_first_grants_do_not_collide(db):
    await asyncio.gather(*(grants.add_grant(db, "o2", "TPL") for _ in range(5)))
    assert await grants.available(db, "o2", "TPL") == 5


def test_template_value_rules():
    assert problems({"thing1": "x" * 20, "name2": "张三", "phrase3": "已结算", "amount4": "¥100.00",
                     "date5": "2025年1月2日", "time6": "15:01", "character_string7": "SET-2025-001",
                     "number8": "12.5"}) == []
    assert [p.split(":")[0] for p in problems({
        "thing1": "x" * 21, "name2": "张" * 11, "phrase3": "abc", "amount4": "一百元", "date5": "明天",
        "number6": "12a", "thing7": " ",
    })] == ["thing1", "name2", "phrase3", "amount4", "date5", "number6", "thing7"]
    assert clip("thing", "长" * 30) == "长" * 19 + "…"
    assert clip("phrase", "已经完成了结算") == "已经完成…"


async def test_fake_runs_standalone_with_control_endpoints(tmp_path):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.wechat_api", "--port", "0", stdout=asyncio.subprocess.PIPE,
    )
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode().split()
        assert line[0] == "ready"
        base = line[1]
        async with aiohttp.ClientSession() as http:
            control = await http.post(f"{base}/_fake/control",
                                      json={"action": "grant", "openid": "o1", "template_id": "T", "n": 2})
            assert (await control.json())["ok"]
            state = await (await http.get(f"{base}/_fake/sent")).json()
            assert state["grants"] == [{"openid": "o1", "template_id": "T", "available": 2}]
            assert state["sent"] == [] and state["stable_token_calls"] == 0
    finally:
        process.terminate()
        await process.wait()
