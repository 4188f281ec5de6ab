"""Typed keys of the core resources the app shell holds in ``app``. Every other ``web.AppKey`` is
declared next to the resource it holds (the WeChat client's in ``bot.wechat.api``, the chat
dispatcher's in ``bot.chat.dispatch`` …), so no low module imports a high one for its key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.readiness import Readiness

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
MONGO: web.AppKey[AsyncMongoClient] = web.AppKey("mongo")
DB: web.AppKey[AsyncDatabase] = web.AppKey("db")
READINESS: web.AppKey[Readiness] = web.AppKey("readiness")
