"""The FAQ endpoints, their errors, the gap list's guard and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient
from pymongo.asynchronous.database import AsyncDatabase

import knowledge
from bot.accounts import staff
from bot.keys import READINESS

ADMIN_TOKEN = "s3cret-admin-token-for-tests"


async def _error(response: Any, status: int, code: str) -> None:
    assert response.status == status, await response.text()
    body = await response.json()
    assert body["error"]["code"] == code and body["error"]["message"]


async def test_ask_answers_a_known_question(client: TestClient) -> None:
    first = knowledge.current_engine().corpus.entries[0]
    response = await client.post("/api/v1/faq/ask", json={"question": first.question})
    assert response.status == 200
    body = await response.json()
    assert body["answered"] is True and body["faq_id"] == first.id and body["answer"] == first.answer
    assert set(body) >= {"answered", "faq_id", "question", "answer", "score", "suggestions"}
    assert client.app[READINESS].detail["faq"]["entries"] == len(knowledge.current_engine().corpus.entries)


async def test_ask_rejects_bad_requests_in_chinese(client: TestClient) -> None:
    post = client.post
    await _error(await post("/api/v1/faq/ask", json={}), 400, "invalid_question")
    await _error(await post("/api/v1/faq/ask", json={"question": 42}), 400, "invalid_question")
    await _error(await post("/api/v1/faq/ask", json={"question": "  "}), 400, "empty_question")
    await _error(await post("/api/v1/faq/ask", json={"question": "问" * 501}), 400, "question_too_long")
    await _error(await post("/api/v1/faq/ask", data=b'{"question": "\xff\xfe"}',
                            headers={"Content-Type": "application/json"}), 400, "invalid_encoding")
    await _error(await post("/api/v1/faq/ask", data=b"{not json", headers={"Content-Type": "application/json"}),
                 400, "invalid_json")
    await _error(await post("/api/v1/faq/ask", json=["问题"]), 400, "invalid_json")


async def test_emoji_only_gets_a_clear_answer(client: TestClient) -> None:
    response = await client.post("/api/v1/faq/ask", json={"question": "😀😀\u200d"})
    assert response.status == 200
    body = await response.json()
    assert body["answered"] is False and body["reason"] == "no_content" and body["message"]


async def test_declined_questions_become_gaps_listed_for_admins(
        make_client: Callable[..., Any], db: AsyncDatabase) -> None:
    client = await make_client(admin_token=ADMIN_TOKEN)
    for _ in range(2):
        response = await client.post("/api/v1/faq/ask", json={"question": "明天去北京的火车票怎么买"})
        assert (await response.json())["answered"] is False
    await client.post("/api/v1/faq/ask", json={"question": "😀"})  # not a question: not a gap

    await _error(await client.get("/api/v1/staff/faq/gaps"), 401, "unauthorized")
    await _error(await client.get("/api/v1/staff/faq/gaps", headers={"Authorization": "Bearer wrong"}),
                 401, "unauthorized")
    response = await client.get("/api/v1/staff/faq/gaps", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status == 200
    body = await response.json()
    assert body["total"] == 1
    (gap,) = body["gaps"]
    assert gap["key"] == "明天去北京的火车票怎么买" and gap["count"] == 2 and gap["last_seen"].endswith("Z")

    await staff.create_or_update(db, "boss", "pw-boss-123", staff.ADMIN, None)
    await staff.create_or_update(db, "clerk", "pw-clerk-123", staff.CENTRE_STAFF, "centre-1")
    headers = {}
    for username, password in (("boss", "pw-boss-123"), ("clerk", "pw-clerk-123")):
        login = await client.post("/api/v1/staff/login", json={"username": username, "password": password})
        headers[username] = {"Authorization": f"Bearer {(await login.json())['token']}"}
    assert (await client.get("/api/v1/staff/faq/gaps", headers=headers["boss"])).status == 200
    await _error(await client.get("/api/v1/staff/faq/gaps", headers=headers["clerk"]), 403, "forbidden")
    await _error(await client.get("/api/v1/staff/faq/gaps?limit=abc", headers=headers["boss"]),
                 400, "invalid_parameter")


async def test_admin_token_is_not_accepted_when_unset(client: TestClient) -> None:
    await _error(await client.get("/api/v1/staff/faq/gaps", headers={"Authorization": "Bearer "}), 401,
                 "unauthorized")
    await _error(await client.get("/api/v1/staff/faq/gaps", headers={"Authorization": "Bearer None"}), 401,
                 "unauthorized")


async def test_categories_entry_and_search(client: TestClient) -> None:
    engine = knowledge.current_engine()
    response = await client.get("/api/v1/faq/categories")
    categories = (await response.json())["categories"]
    assert sum(c["count"] for c in categories) == len(engine.corpus.entries)

    entry = engine.corpus.entries[-1]
    response = await client.get(f"/api/v1/faq/{entry.id}")
    assert response.status == 200 and (await response.json()) == entry.to_dict()
    await _error(await client.get("/api/v1/faq/no-such-entry"), 404, "faq_not_found")

    response = await client.get("/api/v1/faq/search", params={"q": entry.question})
    results = (await response.json())["results"]
    assert 1 <= len(results) <= 10 and results[0]["faq_id"] == entry.id
    await _error(await client.get("/api/v1/faq/search"), 400, "invalid_question")
    await _error(await client.get("/api/v1/faq/search", params={"q": "x" * 501}), 400, "invalid_question")


async def test_openapi_documents_every_faq_endpoint(client: TestClient) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    for path, method in (("/api/v1/faq/ask", "post"), ("/api/v1/faq/categories", "get"),
                         ("/api/v1/faq/search", "get"), ("/api/v1/faq/{faq_id}", "get"),
                         ("/api/v1/staff/faq/gaps", "get")):
        assert method in document["paths"][path]
    assert {"FaqAnswer", "FaqEntry", "FaqGap", "FaqSuggestion"} <= set(document["components"]["schemas"])


async def test_ask_says_which_kind_of_reply_it_is(client: TestClient) -> None:
    response = await client.post("/api/v1/faq/ask", json={"question": "住房公积金怎么提取出来买房"})
    body = await response.json()
    assert body["kind"] == "refer" and "12329" in body["message"] and body["answered"] is False
    assert 0 <= body["confidence"] <= 1
    for question, kinds in (("异地就医备案怎么办理", {"answer"}), ("明天去北京的火车票怎么买", {"decline"})):
        body = await (await client.post("/api/v1/faq/ask", json={"question": question})).json()
        assert body["kind"] in kinds and 0 <= body["confidence"] <= 1, body
    document = await (await client.get("/api/v1/openapi.json")).json()
    kind = document["components"]["schemas"]["FaqAnswer"]["properties"]["kind"]
    assert set(kind["enum"]) == {"answer", "clarify", "refer", "decline"}
    assert "refer" in document["components"]["schemas"]["FaqAnswer"]["description"]


async def test_a_get_on_ask_is_405_not_an_entry_called_ask(client: TestClient) -> None:
    await _error(await client.get("/api/v1/faq/ask"), 405, "method_not_allowed")
    await _error(await client.get("/api/v1/faq/no-such-entry"), 404, "faq_not_found")
