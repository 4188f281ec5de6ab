"""bot.endpoints: one pydantic declaration validates a request and documents it."""

from __future__ import annotations

import pytest
from aiohttp import web
from pydantic import BaseModel, Field

from bot.endpoints import Api, Body, Query, QueryInt
from bot.middlewares import error_middleware
from bot.openapi import build_document

api = Api("demo")


class Note(Body):
    text: str = Field(min_length=1, max_length=10, title="内容")
    count: int = Field(1, ge=1, le=5, title="数量")


class Paging(Query):
    limit: QueryInt = Field(20, ge=1, le=100, description="每页条数")


class Echo(BaseModel):
    text: str
    count: int
    limit: int


@api.post("/api/v1/notes", summary="示例", body=Note, query=Paging, response=Echo, status=201)
async def create_note(request: web.Request, body: Note, query: Paging) -> Echo:
    return Echo(text=body.text, count=body.count, limit=query.limit)


@pytest.fixture
async def client(aiohttp_client):
    from bot.config import Settings
    from bot.keys import SETTINGS

    app = web.Application(middlewares=[error_middleware])
    app[SETTINGS] = Settings.from_env({})
    app.add_routes(api.routes)
    return await aiohttp_client(app)


async def error(response) -> tuple[int, str, str]:
    body = await response.json()
    return response.status, body["error"]["code"], body["error"]["message"]


async def test_a_valid_request_reaches_the_handler_with_parsed_models(client):
    response = await client.post("/api/v1/notes?limit=7", json={"text": " 你好 ", "count": 2})
    assert response.status == 201
    assert await response.json() == {"text": "你好", "count": 2, "limit": 7}


@pytest.mark.parametrize(("raw", "code"), [
    (b'{"text": "a", "count": true}', "invalid_field"),  # a boolean is not a number
    (b'{"text": "a", "count": "2"}', "invalid_field"),  # nor is a string
    (b'{"text": ""}', "invalid_field"),
    (b'{"text": "a", "colour": "red"}', "unknown_fields"),
    (b'{"text": "\\ud800"}', "invalid_json"),  # a lone surrogate
    (b"[" * 100_000 + b"]" * 100_000, "invalid_json"),  # nesting too deep for any parser
    (b"[1, 2]", "invalid_json"),
    (b"", "body_required"),
    (b"\xff\xfe", "invalid_encoding"),
])
async def test_invalid_bodies_are_a_400_with_a_stable_code(client, raw, code):
    response = await client.post("/api/v1/notes", data=raw, headers={"Content-Type": "application/json"})
    status, got, message = await error(response)
    assert (status, got) == (400, code) and message


async def test_the_message_names_every_field_in_chinese(client):
    status, code, message = await error(await client.post("/api/v1/notes", json={"text": "x" * 11, "count": 9}))
    assert (status, code) == (400, "invalid_field")
    assert "「内容」长度超出限制" in message and "「数量」数值过大" in message


@pytest.mark.parametrize("limit", ["²", "①", "٣", "1e3", "0", "101", ""])
async def test_query_integers_are_ascii_digits_in_range(client, limit):
    status, code, _ = await error(await client.post(f"/api/v1/notes?limit={limit}", json={"text": "a"}))
    assert (status, code) == (400, "invalid_parameter")


def test_the_document_comes_from_the_same_models():
    class Module:
        pass

    Module.api = api
    document = build_document([Module])  # type: ignore[list-item]
    operation = document["paths"]["/api/v1/notes"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Note"}
    note = document["components"]["schemas"]["Note"]
    assert note["properties"]["text"]["maxLength"] == 10 and note["additionalProperties"] is False
    limit = next(p for p in operation["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 100 and limit["in"] == "query"
    assert set(operation["responses"]) == {"201", "400"}
