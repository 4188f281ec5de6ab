import asyncio
import logging

from bot.app import create_app
from bot.embedded import EmbeddedMongo, free_port
from bot.keys import READINESS


async def test_error_envelope_for_unknown_api_route(client):
    response = await client.get("/api/v1/does-not-exist")
    assert response.status == 404
    assert await response.json() == {"error": {"code": "not_found", "message": "找不到该资源"}}


async def test_method_not_allowed(client):
    response = await client.get("/api/v1/auth/dev-login")
    assert response.status == 405
    assert (await response.json())["error"]["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


async def test_unhandled_error_has_no_traceback_and_is_logged(aiohttp_client, settings, db, caplog):
    app = create_app(settings, scheduler=False)

    async def boom(request):
        raise RuntimeError("secret internals")

    app.router.add_get("/api/v1/_boom", boom)
    client = await aiohttp_client(app)
    with caplog.at_level(logging.ERROR):
        response = await client.get("/api/v1/_boom", headers={"X-Request-ID": "req-42"})
    assert response.status == 500
    body = await response.json()
    assert body == {"error": {"code": "internal_error", "message": "服务器内部错误，请稍后再试"}}
    assert "secret internals" not in await response.text()
    assert response.headers["X-Request-ID"] == "req-42"
    assert any(r.levelno == logging.ERROR and "unhandled" in r.getMessage() for r in caplog.records)


async def test_invalid_json_gets_chinese_400(client):
    response = await client.post("/api/v1/auth/dev-login", data=b"{not json")
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_json"
    response = await client.post("/api/v1/auth/dev-login", data="\xff\xfe".encode("latin-1"))
    assert (await response.json())["error"]["code"] == "invalid_encoding"


async def test_body_limit(make_client, db):
    client = await make_client(max_body_bytes=1024)
    response = await client.post("/api/v1/auth/dev-login", data=b"x" * 2048)
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "body_too_large"

    async def chunks():  # no Content-Length: the limit applies while reading
        for _ in range(4):
            yield b"y" * 1024

    response = await client.post("/api/v1/auth/dev-login", data=chunks())
    assert response.status == 413


async def test_request_id_is_honoured_or_generated(client):
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    response = await client.get("/healthz")
    assert len(response.headers["X-Request-ID"]) == 32
    response = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.headers["X-Request-ID"] != "bad id\twith spaces"


async def test_metrics_by_route_and_status(client):
    await client.get("/healthz")
    text = await (await client.get("/metrics")).text()
    assert 'http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert "http_request_duration_seconds_bucket" in text


async def test_openapi_document(client):
    response = await client.get("/api/v1/openapi.json")
    document = await response.json()
    assert document["openapi"].startswith("3.")
    assert "/api/v1/auth/dev-login" in document["paths"]
    assert "Error" in document["components"]["schemas"]


async def test_readyz_waits_for_the_database(aiohttp_client, settings, tmp_path):
    port = free_port()
    server = EmbeddedMongo(tmp_path / "late-mongo", port=port)
    app = create_app(
        type(settings)(**{**settings.__dict__, "mongodb_uri": server.uri}), scheduler=False
    )
    client = await aiohttp_client(app)
    response = await client.get("/readyz")
    assert response.status == 503
    assert "database" in (await response.json())["pending"]
    server.start()
    try:
        await server.wait_ready()
        await asyncio.wait_for(app[READINESS].wait(), 30)
        response = await client.get("/readyz")
        assert response.status == 200, await response.text()
    finally:
        await client.close()
        server.stop()


async def test_logout_revokes_the_token(client):
    response = await client.post("/api/v1/auth/dev-login", json={"openid": "family-1"})
    token = (await response.json())["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.post("/api/v1/auth/logout", headers=headers)).status == 200
    assert (await client.post("/api/v1/auth/logout", headers=headers)).status == 401


async def test_dev_login_is_hidden_when_wechat_is_configured(make_client, db):
    client = await make_client(wechat_app_id="wx123")
    response = await client.post("/api/v1/auth/dev-login", json={"openid": "x"})
    assert response.status == 404

