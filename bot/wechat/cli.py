"""WeChat commands of ``python -m bot``:

- ``wechat menu push [--file F] [--dry-run]``: check the custom menu (``bot/wechat/menu.json``) and
  create it with ``cgi-bin/menu/create`` (needs WECHAT_APP_ID and WECHAT_APP_SECRET);
- ``chat [--url U] [--aes] [--openid O]``: a terminal chat with a running instance, playing the
  WeChat server (``bot.wechat.simulator``); token, AES key and AppID come from the same environment
  variables and development defaults as the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp

from bot.config import Settings

MENU_FILE = Path(__file__).with_name("menu.json")
MENU_KEYS = ("MENU_BOOK_CENTRE", "MENU_BOOK_NURSE", "MENU_MY_BOOKINGS", "MENU_SETTLEMENT", "MENU_HELP")

CHAT_HELP = """命令：
  直接输入文字        发送文本消息
  /voice 文本         发送语音（带语音识别结果）；/voice 不带文字 = 无法识别的语音
  /click MENU_KEY     点击菜单（MENU_BOOK_CENTRE MENU_BOOK_NURSE MENU_MY_BOOKINGS MENU_SETTLEMENT MENU_HELP）
  /subscribe          关注公众号      /unsubscribe   取消关注
  /image  /location   发送图片、位置
  /help               显示本帮助      /quit          退出"""


def menu_problems(menu: Any) -> list[str]:
    """What WeChat would refuse in a custom menu, plus our five keys being present."""
    found: list[str] = []
    buttons = menu.get("button") if isinstance(menu, dict) else None
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return ["一级菜单须为 1 到 3 个"]
    keys: list[str] = []

    def check(button: Any, limit: int, where: str) -> None:
        name = button.get("name", "") if isinstance(button, dict) else ""
        if not name or len(name.encode("utf-8")) > limit:
            found.append(f"{where}：名称为空或超过 {limit} 字节")
        if isinstance(button, dict) and button.get("type") == "click":
            key = button.get("key", "")
            if not key or len(key.encode("utf-8")) > 128:
                found.append(f"{where}：click 按钮缺少 key 或超过 128 字节")
            keys.append(key)

    for i, button in enumerate(buttons, start=1):
        check(button, 16, f"第 {i} 个一级菜单")
        subs = button.get("sub_button") if isinstance(button, dict) else None
        if subs is not None:
            if not isinstance(subs, list) or not 1 <= len(subs) <= 5:
                found.append(f"第 {i} 个一级菜单：二级菜单须为 1 到 5 个")
                continue
            for j, sub in enumerate(subs, start=1):
                check(sub, 60, f"第 {i}-{j} 个二级菜单")
    missing = [key for key in MENU_KEYS if key not in keys]
    if missing:
        found.append("缺少菜单 key：" + "、".join(missing))
    return found


def _menu_push(args: argparse.Namespace, settings: Settings) -> int:
    from bot.db import standalone_database
    from bot.wechat.api import WeChatClient, WeChatError

    try:
        menu = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"无法读取菜单文件 {args.file}：{exc}", file=sys.stderr)
        return 2
    problems = menu_problems(menu)
    if problems:
        print("菜单不符合微信要求：\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    if args.dry_run:
        print(json.dumps(menu, ensure_ascii=False, indent=2))
        return 0
    if not (settings.wechat_app_id and settings.wechat_app_secret):
        print("需要设置 WECHAT_APP_ID 和 WECHAT_APP_SECRET / set WECHAT_APP_ID and WECHAT_APP_SECRET",
              file=sys.stderr)
        return 2

    async def push() -> None:
        async with standalone_database(settings) as (_, db), aiohttp.ClientSession() as http:
            await WeChatClient(http, db, settings).create_menu(menu)

    try:
        asyncio.run(push())
    except WeChatError as exc:
        print(f"菜单创建失败：{exc.errcode} {exc.errmsg}", file=sys.stderr)
        return 1
    print(f"菜单已创建（{args.file}）")
    return 0


def _describe(reply: Any) -> str:
    if reply.kind == "text":
        return reply.content
    if reply.kind == "transfer_customer_service":
        return "（已转接人工客服）"
    if reply.kind == "empty":
        return "（无被动回复；如有回复将稍后以客服消息发送）"
    return f"（HTTP {reply.status}：{reply.content}）"


async def _chat_loop(url: str, settings: Settings, *, aes: bool, openid: str) -> int:
    from bot.wechat.callback import CallbackCredentials
    from bot.wechat.simulator import Simulator

    credentials = CallbackCredentials.from_settings(settings)
    if credentials.token is None:
        print("未设置 WECHAT_TOKEN（已配置 WECHAT_APP_ID 时必须设置）", file=sys.stderr)
        return 2
    if aes and credentials.aes_key is None:
        print("安全模式需要 WECHAT_ENCODING_AES_KEY", file=sys.stderr)
        return 2
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"医保小助手 模拟聊天 → {url}（{'安全模式' if aes else '明文模式'}，openid {openid}）\n{CHAT_HELP}")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        bot = Simulator(http, url, credentials, openid, aes=aes)
        while True:
            try:
                line = await asyncio.to_thread(input, "我> " if interactive else "")
            except EOFError:
                return 0
            line = line.strip()
            if not line:
                continue
            command, _, rest = line.partition(" ")
            try:
                if command in ("/quit", "/exit"):
                    return 0
                if command == "/help":
                    print(CHAT_HELP)
                    continue
                if command == "/click" and rest.strip():
                    reply = await bot.click(rest.strip())
                elif command == "/voice":
                    reply = await bot.voice(rest.strip() or None)
                elif command == "/subscribe":
                    reply = await bot.subscribe()
                elif command == "/unsubscribe":
                    reply = await bot.unsubscribe()
                elif command == "/image":
                    reply = await bot.image()
                elif command == "/location":
                    reply = await bot.location()
                elif command.startswith("/"):
                    print("未知命令，输入 /help 查看帮助")
                    continue
                else:
                    reply = await bot.text(line)
            except aiohttp.ClientError as exc:
                print(f"无法连接 {url}：{exc}（服务是否已启动？python -m bot serve）", file=sys.stderr)
                continue
            print(f"小助手> {_describe(reply)}", flush=True)


def _chat(args: argparse.Namespace, settings: Settings) -> int:
    url = args.url or f"http://{settings.host}:{settings.port}"
    return asyncio.run(_chat_loop(url, settings, aes=args.aes, openid=args.openid))


def register(sub: argparse._SubParsersAction) -> None:
    wechat = sub.add_parser("wechat", help="微信公众号工具")
    wechat_sub = wechat.add_subparsers(dest="wechat_command", required=True, metavar="COMMAND")
    menu = wechat_sub.add_parser("menu", help="自定义菜单")
    menu_sub = menu.add_subparsers(dest="menu_command", required=True, metavar="COMMAND")
    push = menu_sub.add_parser("push", help="校验并创建自定义菜单（cgi-bin/menu/create）")
    push.add_argument("--file", default=str(MENU_FILE), help="菜单 JSON 文件（默认 bot/wechat/menu.json）")
    push.add_argument("--dry-run", action="store_true", help="只校验并打印，不调用微信接口")
    push.set_defaults(func=_menu_push)

    chat = sub.add_parser("chat", help="在终端里扮演微信服务器与运行中的实例聊天")
    chat.add_argument("--url", help="实例地址（默认 http://HOST:PORT）")
    chat.add_argument("--aes", action="store_true", help="安全模式：加密消息并解密回复")
    chat.add_argument("--openid", default="dev-openid-0001", help="模拟用户的 openid")
    chat.set_defaults(func=_chat)
