"""Issue 18: hostile input gets a 400 with a stable code, never a 500 or a traceback; every error
under /api/ is the JSON envelope, even aiohttp's own; slow bodies get 408; production mode never
falls back to development conveniences; security headers."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from bot.errors import ApiError
from bot.web import error_response
from tests.conftest import login

ADMIN = "admin-token-for-tests-0123456789"
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"question": ' + b"[" * 5000 + b"]" * 5000 + b"}"


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith(("bot", "aiohttp"))
            and r.name != "bot.settlements.identity_key"]  # the development key file, at app start
    assert not loud, [r.getMessage() for r in loud]
    assert not [r for r in caplog.records if r.exc_info], "a client mistake was logged with a traceback"


async def envelope(response) -> tuple[int, str]:
    assert response.content_type == "application/json", await response.text()
    body = await response.json()
    return response.status, body["error"]["code"]


# --- finding 3: unauthenticated 500s ------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/v1/auth/dev-login", "/api/v1/faq/ask", "/api/v1/staff/login"])
@pytest.mark.parametrize("raw", [DEEP, DEEP_OBJECT], ids=["deep-array", "deep-in-object"])
async def test_deeply_nested_json_is_a_400(client, caplog, path, raw):
    caplog.set_level(logging.INFO)
    response = await client.post(path, data=raw, headers={"Content-Type": "application/json"})
    assert await envelope(response) == (400, "invalid_json")
    no_tracebacks(caplog)


@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/staff/login", {"username": "\ud800", "password": "x"}),
    ("/api/v1/faq/ask", {"question": "异地\udfff就医"}),
    ("/api/v1/auth/dev-login", {"openid": "a\ud800"}),
])
async def test_lone_surrogates_are_a_400(client, caplog, path, body):
    caplog.set_level(logging.INFO)
    raw = json.dumps(body).encode()  # ensure_ascii: the surrogate travels as the escape \\ud800
    assert b"\\ud8" in raw or b"\\udf" in raw
    response = await client.post(path, data=raw, headers={"Content-Type": "application/json"})
    status, code = await envelope(response)
    assert status == 400 and code
    no_tracebacks(caplog)


async def test_lone_surrogates_in_a_resident_body_are_a_400(client, caplog):
    headers = await login(client)
    caplog.set_level(logging.INFO)
    for path, body in [("/api/v1/subscriptions", {"template_ids": ["\ud800"]}),
                       ("/api/v1/patients", {"name": "张\ud800", "gender": "男", "age": 80, "phone": "13912345678",
                                             "address": {"district": "婺城区", "street": "城东街道"}})]:
        response = await client.post(path, data=json.dumps(body),
                                     headers={**headers, "Content-Type": "application/json"})
        status, _ = await envelope(response)
        assert status == 400, path
    no_tracebacks(caplog)


async def test_numbers_mongodb_cannot_store_are_a_400(client):
    response = await client.post("/api/v1/faq/ask", data=b'{"question": "x", "n": 123456789012345678901234567890}',
                                 headers={"Content-Type": "application/json"})
    assert await envelope(response) == (400, "invalid_json")


@pytest.mark.parametrize("value", ["²", "①", "٣", "１"])
async def test_non_ascii_digits_in_integer_queries_are_a_400(make_client, db, caplog, value):
    client = await make_client(admin_token=ADMIN)
    caplog.set_level(logging.INFO)
    for name in ("limit", "skip"):
        response = await client.get("/api/v1/staff/faq/gaps", params={name: value},
                                    headers={"Authorization": f"Bearer {ADMIN}"})
        status, _ = await envelope(response)
        assert status == 400, name
    headers = await login(client)
    response = await client.get("/api/v1/settlements", params={"limit": value}, headers=headers)
    status, _ = await envelope(response)
    assert status in (400, 503)  # 503: no identity key configured here; never a 500
    no_tracebacks(caplog)


def test_the_error_envelope_always_encodes():
    """A message or detail echoing a lone surrogate used to make aiohttp answer a plain-text 500."""
    response = error_response(ApiError(400, "invalid_field", "「姓名\ud800」格式不正确", field="name\udfff"))
    body = json.loads(response.body.decode("utf-8"))
    assert body["error"]["message"] == "「姓名\ufffd」格式不正确" and body["error"]["details"]["field"] == "name\ufffd"


# --- finding 4: aiohttp's own errors, under /api/ too ------------------------------------------------------

async def raw_request(client, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


async def test_an_unencoded_query_gets_the_json_envelope_and_no_traceback(client, caplog):
    caplog.set_level(logging.INFO)
    status, headers, body = await raw_request(
        client, "GET /api/v1/faq/search?q=骗保 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert status == 400 and headers["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_url" and "编码" in error["message"]
    assert headers["x-content-type-options"] == "nosniff"
    no_tracebacks(caplog)


async def test_garbage_request_lines_get_the_envelope(client, caplog):
    caplog.set_level(logging.INFO)
    status, _headers, body = await raw_request(client, b"GET /api/v1/" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n")
    assert status == 400 and json.loads(body)["error"]["code"]
    no_tracebacks(caplog)


async def test_a_client_that_hangs_up_mid_body_is_not_an_error(client, caplog):
    caplog.set_level(logging.INFO)
    _reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"POST /api/v1/faq/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"question\"")
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await writer.wait_closed()
    # the server notices; then a normal request proves it is fine and lets the log settle
    for _ in range(20):
        await asyncio.sleep(0.05)
    assert (await client.get("/healthz")).status == 200
    no_tracebacks(caplog)


# --- finding 5: a deadline for every body ---------------------------------------------------------------

async def test_a_body_trickled_a_byte_a_second_gets_408(make_client, db, caplog):
    client = await make_client(body_read_timeout_seconds=0.5)
    caplog.set_level(logging.INFO)
    body = b'{"openid": "slow-loris-resident"}'
    reader, writer = await asyncio.open_connection(client.host, client.port)

    async def trickle() -> None:
        writer.write(b"POST /api/v1/auth/dev-login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        for byte in body:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1)

    feeding = asyncio.create_task(trickle())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    finally:
        feeding.cancel()
        writer.close()
    assert head.startswith(b"HTTP/1.1 408")
    assert b"application/json" in head
    no_tracebacks(caplog)


# --- finding 8: development mode is explicit ---------------------------------------------------------------

async def test_production_mode_without_an_appid_has_no_dev_login(make_client, db):
    client = await make_client(app_env="production")
    response = await client.post("/api/v1/auth/dev-login", json={"openid": "someone"})
    assert await envelope(response) == (404, "not_found")


# --- finding 10: headers ----------------------------------------------------------------------------------

async def test_security_headers(client):
    headers = await login(client)
    response = await client.get("/api/v1/patients", headers=headers)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert "aiohttp" not in response.headers["Server"] and "Python" not in response.headers["Server"]
    login_response = await client.post("/api/v1/auth/dev-login", json={"openid": "resident-2"})
    assert login_response.headers["Cache-Control"] == "no-store"  # it carries a token
    error = await client.get("/api/v1/patients")  # 401: an error is not cacheable either
    assert error.headers["Cache-Control"] == "no-store" and error.headers["X-Content-Type-Options"] == "nosniff"
    public = await client.get("/api/v1/faq/categories")
    assert public.status == 200 and "no-store" not in public.headers.get("Cache-Control", "")
    assert public.headers["X-Content-Type-Options"] == "nosniff"
    missing = await client.get("/api/v1/nothing-here")
    assert missing.headers["X-Content-Type-Options"] == "nosniff" and missing.headers["Cache-Control"] == "no-store"


async def test_scheduler_shutdown_during_a_run_is_not_an_error(client, caplog):
    from datetime import timedelta

    from prometheus_client import REGISTRY

    from bot.jobs import Job, run_scheduler

    started = asyncio.Event()

    async def long_run(app):
        started.set()
        await asyncio.sleep(3600)

    def cancelled() -> float:
        return REGISTRY.get_sample_value("job_runs_total", {"job": "test-long", "result": "cancelled"}) or 0

    before = cancelled()
    caplog.set_level(logging.INFO)
    ticking = run_scheduler(client.app, [Job("test-long", timedelta(seconds=0.05), long_run)])
    await anext(ticking)
    await asyncio.wait_for(started.wait(), 30)
    await ticking.aclose()  # what the app's shutdown does
    assert cancelled() == before + 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
