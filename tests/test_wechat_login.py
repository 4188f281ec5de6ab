"""Mini-program login through code2session, the menu command and the terminal chat simulator."""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import sys

import pytest

from bot.chat.replies import ASK_TO_TYPE
from bot.config import Settings
from bot.wechat import cli as wechat_cli
from handlers import openapi_document
from tests.fakes.wechat_api import JSCODE2SESSION, MENU_CREATE


@pytest.fixture
async def wx_client(make_client, db, fake_wechat):
    return await make_client(wechat_app_id=fake_wechat.app_id, wechat_app_secret=fake_wechat.secret,
                             wechat_api_base=fake_wechat.base_url)


async def test_wx_login_issues_our_own_session(wx_client, fake_wechat, db):
    fake_wechat.add_code("code-1", "openid-mp-1", unionid="union-1")
    response = await wx_client.post("/api/v1/auth/wx-login", json={"code": "code-1"})
    body = await response.json()
    assert response.status == 200 and body["openid"] == "openid-mp-1" and body["token"]
    assert "session_key" not in body
    user = await db.users.find_one({"_id": "openid-mp-1"})
    assert user["unionid"] == "union-1"
    headers = {"Authorization": f"Bearer {body['token']}"}
    assert (await wx_client.post("/api/v1/auth/logout", headers=headers)).status == 200
    assert (await wx_client.post("/api/v1/auth/logout", headers=headers)).status == 401


@pytest.mark.parametrize("payload", [{}, {"code": ""}, {"code": 12}, {"code": "x" * 200}])
async def test_wx_login_rejects_missing_or_malformed_code(wx_client, payload):
    response = await wx_client.post("/api/v1/auth/wx-login", json=payload)
    assert response.status == 400 and (await response.json())["error"]["code"] == "invalid_code"


async def test_wx_login_with_an_invalid_or_used_code(wx_client, fake_wechat):
    response = await wx_client.post("/api/v1/auth/wx-login", json={"code": "never-issued"})
    assert response.status == 401 and (await response.json())["error"]["code"] == "invalid_code"
    fake_wechat.add_code("once", "openid-2")
    assert (await wx_client.post("/api/v1/auth/wx-login", json={"code": "once"})).status == 200
    assert (await wx_client.post("/api/v1/auth/wx-login", json={"code": "once"})).status == 401


async def test_wx_login_when_wechat_is_busy(wx_client, fake_wechat):
    fake_wechat.add_code("busy", "openid-3")
    fake_wechat.fail_next(JSCODE2SESSION, [-1, -1, -1])
    response = await wx_client.post("/api/v1/auth/wx-login", json={"code": "busy"})
    assert response.status == 503 and (await response.json())["error"]["code"] == "wechat_unavailable"


async def test_dev_login_is_gone_when_an_app_id_is_configured(wx_client):
    assert (await wx_client.post("/api/v1/auth/dev-login", json={"openid": "x"})).status == 404


async def test_wx_login_without_configuration_points_to_dev_login(client):
    response = await client.post("/api/v1/auth/wx-login", json={"code": "c"})
    assert response.status == 503 and (await response.json())["error"]["code"] == "wechat_not_configured"
    assert (await client.post("/api/v1/auth/dev-login", json={"openid": "dev-1"})).status == 200


def test_openapi_documents_the_wechat_endpoints():
    paths = openapi_document()["paths"]
    assert {"get", "post"} <= set(paths["/wechat/callback"])
    assert "400" in paths["/api/v1/auth/wx-login"]["post"]["responses"]


# --- menu ---------------------------------------------------------------------------------------------

def test_repository_menu_is_valid():
    menu = json.loads(wechat_cli.MENU_FILE.read_text(encoding="utf-8"))
    assert wechat_cli.menu_problems(menu) == []


def test_menu_problems_are_reported():
    menu = json.loads(wechat_cli.MENU_FILE.read_text(encoding="utf-8"))
    too_long = copy.deepcopy(menu)
    too_long["button"][1]["name"] = "结算进度查询服务"
    assert any("字节" in p for p in wechat_cli.menu_problems(too_long))
    missing = copy.deepcopy(menu)
    missing["button"].pop()
    assert any("MENU_HELP" in p for p in wechat_cli.menu_problems(missing))
    assert wechat_cli.menu_problems({"button": []}) == ["一级菜单须为 1 到 3 个"]


async def test_menu_push_creates_the_menu(settings, fake_wechat):
    configured = Settings(**{**settings.__dict__, "wechat_app_id": fake_wechat.app_id,
                             "wechat_app_secret": fake_wechat.secret, "wechat_api_base": fake_wechat.base_url})
    args = argparse.Namespace(file=str(wechat_cli.MENU_FILE), dry_run=False)
    # the command runs its own event loop, as it does from the shell
    assert await asyncio.to_thread(wechat_cli._menu_push, args, configured) == 0
    assert fake_wechat.menus == [json.loads(wechat_cli.MENU_FILE.read_text(encoding="utf-8"))]
    dry = argparse.Namespace(file=str(wechat_cli.MENU_FILE), dry_run=True)
    assert await asyncio.to_thread(wechat_cli._menu_push, dry, configured) == 0
    assert sum(r["path"] == MENU_CREATE for r in fake_wechat.requests) == 1


def test_menu_push_needs_credentials(settings, capsys):
    args = argparse.Namespace(file=str(wechat_cli.MENU_FILE), dry_run=False)
    assert wechat_cli._menu_push(args, settings) == 2
    assert "WECHAT_APP_ID" in capsys.readouterr().err


# --- the terminal simulator ---------------------------------------------------------------------------

async def test_chat_command_talks_to_a_running_instance(client):
    """One run in safe mode: signing, encryption and reply decryption; plain mode is covered above."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "MONGODB_"))}
    command = [sys.executable, "-m", "bot", "chat", "--url", str(client.make_url("/")), "--aes"]
    process = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    script = "/subscribe\n/click MENU_HELP\n人工\n/voice\n/voice 门诊慢特病怎么申请\n/quit\n"
    stdout, stderr = await asyncio.wait_for(process.communicate(script.encode()), 60)
    output = stdout.decode()
    assert process.returncode == 0, stderr.decode()
    assert "欢迎关注" in output and "使用帮助" in output and "已转接人工客服" in output
    assert ASK_TO_TYPE in output and "慢特病" in output
