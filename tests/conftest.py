"""Shared fixtures: one real MongoDB wire-protocol server (SecantusDB, a separate process) for the
whole session, and a fresh database per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from bot import db as database
from bot.app import create_app
from bot.config import Settings
from bot.embedded import EmbeddedMongo
from bot.keys import READINESS
from tests.fakes.wechat_api import FakeWeChat

# Development mode is chosen explicitly, never inferred (issue 18): the suite chooses it, for the app
# fixtures below and for the `python -m bot …` processes tests start (they inherit the environment).
# Tests of production mode pass their own environment or override ``app_env``.
os.environ.setdefault("APP_ENV", "development")


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedMongo(tmp_path_factory.mktemp("secantus") / "mongo")
    server.start()
    try:
        server.wait_ready_sync()
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def db_name() -> str:
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(mongo_uri: str, db_name: str, tmp_path: Any) -> Settings:
    # development mode is never inferred: the suite chooses it (tests of production mode override it)
    return Settings.from_env({"APP_ENV": "development"}, mongodb_uri=mongo_uri, mongodb_db=db_name,
                             data_dir=tmp_path)


@pytest.fixture
async def mongo_client(mongo_uri: str) -> AsyncIterator[AsyncMongoClient]:
    client = database.connect(mongo_uri)
    yield client
    await client.close()


@pytest.fixture
async def db(mongo_client: AsyncMongoClient, db_name: str) -> AsyncIterator[AsyncDatabase]:
    """A fresh database with every declared index, dropped afterwards."""
    fresh = mongo_client[db_name]
    await database.ensure_indexes(fresh)
    yield fresh
    await mongo_client.drop_database(db_name)


@pytest.fixture
async def make_client(
    aiohttp_client: Callable[..., Any], settings: Settings
) -> Callable[..., Any]:
    """Build the real app against the test database and wait until /readyz would say ready."""

    async def make(**overrides: Any) -> TestClient:
        app: web.Application = create_app(
            Settings(**{**settings.__dict__, **overrides}), scheduler=False
        )
        client = await aiohttp_client(app)
        await app[READINESS].wait()
        return client

    return make


@pytest.fixture
async def client(make_client: Callable[..., Any], db: AsyncDatabase) -> TestClient:
    return await make_client()


async def login(client: TestClient, openid: str = "resident-1") -> dict[str, str]:
    """Headers of a signed-in resident (development login)."""
    response = await client.post("/api/v1/auth/dev-login", json={"openid": openid})
    assert response.status == 200, await response.text()
    return {"Authorization": f"Bearer {(await response.json())['token']}"}


@pytest.fixture
async def fake_wechat() -> AsyncIterator[FakeWeChat]:
    """A fake WeChat API on a loopback port (``.base_url``, ``.app_id``, ``.secret``; see tests/fakes)."""
    fake = FakeWeChat()
    await fake.start()
    yield fake
    await fake.stop()
