"""``seed-demo``: idempotent demo data. Each capability adds its seeder to ``seeders()``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from bot.config import Settings

Seeder = Callable[[AsyncMongoClient, AsyncDatabase, Settings], Awaitable[list[str]]]


async def _seed_demo_resident(client: AsyncMongoClient, db: AsyncDatabase, settings: Settings) -> list[str]:
    from bot.wechat.users import touch_user

    await touch_user(db, "demo-resident")
    return ["居民账号 demo-resident（开发登录：POST /api/v1/auth/dev-login {\"openid\": \"demo-resident\"}）"]


def seeders() -> list[Seeder]:
    from bot.settlements.demo import seed_settlement_demo
    from scheduling.home_visit_demo import seed_home_visit_demo
    from scheduling.seed import seed_booking_demo

    return [_seed_demo_resident, seed_booking_demo, seed_settlement_demo, seed_home_visit_demo]  # issue 16


async def seed_demo(client: AsyncMongoClient, db: AsyncDatabase, settings: Settings) -> list[str]:
    """Run every seeder; returns the lines to print (what was created, one-time passwords)."""
    lines: list[str] = []
    for seeder in seeders():
        lines.extend(await seeder(client, db, settings))
    return lines
