"""Typed keys for everything the application holds in ``app``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.readiness import Readiness
    from bot.templates import TemplateBook
    from bot.wechat_api import WeChatClient
    from handlers.wechat_dispatch import ChatDispatcher
    from scheduling.dispatch import DispatchControl

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
MONGO: web.AppKey[AsyncMongoClient] = web.AppKey("mongo")
DB: web.AppKey[AsyncDatabase] = web.AppKey("db")
READINESS: web.AppKey[Readiness] = web.AppKey("readiness")
WECHAT: web.AppKey[WeChatClient] = web.AppKey("wechat")
CHAT: web.AppKey[ChatDispatcher] = web.AppKey("chat")
TEMPLATES: web.AppKey[TemplateBook] = web.AppKey("templates")
IDENTITY_KEY: web.AppKey[bytes | None] = web.AppKey("identity_key")
DISPATCH: web.AppKey[DispatchControl] = web.AppKey("dispatch")
