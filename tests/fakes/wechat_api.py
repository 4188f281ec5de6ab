"""A fake of the WeChat API for tests, speaking its real JSON and error codes.

Endpoints: ``cgi-bin/stable_token``, ``sns/jscode2session``, ``cgi-bin/message/subscribe/send``,
``cgi-bin/message/custom/send``, ``cgi-bin/menu/create``, ``cityservice/face/identify/getinfo``
(face-verification results: unknown ``verify_result`` 84001, expired 84002, asked about before
84003). ``cgi-bin/token`` answers 40164-like
refusal (``FORBIDDEN_TOKEN_ENDPOINT``) and is counted, so a test can prove it is never used.

In process (pytest fixture ``fake_wechat``)::

    fake = FakeWeChat(); await fake.start(); fake.base_url
    fake.add_code("code-1", "openid-1", unionid="u-1")     # js_code → openid (unknown code: 40029)
    fake.grant("openid-1", "TPL", 2)                      # two subscribe grants (none left: 43101)
    fake.open_window("openid-1")                          # 48 h customer-service window (outside: 45015)
    fake.add_face_result("vr-1", "openid-1", "110105194912310021", "张三")  # a passed face verification
    fake.add_face_result("vr-2", "openid-1", "…", "…", identify_ret=10001, age_seconds=3600, expired=True)
    fake.fail_next("cgi-bin/message/subscribe/send", [-1, 45009, "http:500"])
    fake.delay["cgi-bin/message/custom/send"] = 2.0       # seconds before answering
    fake.expire_all_tokens()                              # every issued token now answers 42001
    fake.sent, fake.requests, fake.stable_token_calls

Standalone (other processes, e.g. a crash test): ``python -m tests.fakes.wechat_api --port N``
prints ``ready <base_url>`` and serves the same API plus two JSON endpoints:
``GET /_fake/sent`` → ``{"sent": [...], "stable_token_calls": n, "requests": n, "grants": [...]}``
and ``POST /_fake/control`` with one action:
``{"action": "grant", "openid", "template_id", "n"}``, ``{"action": "open_window", "openid", "quota"?}``,
``{"action": "close_window", "openid"}``, ``{"action": "add_code", "code", "openid", "unionid"?}``,
``{"action": "fail_next", "path", "errors": [...]}``, ``{"action": "delay", "path", "seconds"}``,
``{"action": "add_face_result", "verify_result", "openid", "id_number", "name", "identify_ret"?,
"age_seconds"?, "expired"?}``, ``{"action": "expire_all_tokens"}``, ``{"action": "reset"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import secrets
import time
from collections import defaultdict, deque
from typing import Any

from aiohttp import web

APP_ID = "wxfakeappid000001"
APP_SECRET = "fake-app-secret"

STABLE_TOKEN = "cgi-bin/stable_token"
JSCODE2SESSION = "sns/jscode2session"
SUBSCRIBE_SEND = "cgi-bin/message/subscribe/send"
CUSTOM_SEND = "cgi-bin/message/custom/send"
MENU_CREATE = "cgi-bin/menu/create"
FACE_GETINFO = "cityservice/face/identify/getinfo"
LEGACY_TOKEN = "cgi-bin/token"

ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40003: "invalid openid",
    40013: "invalid appid",
    40014: "invalid access_token",
    40029: "invalid code",
    40125: "invalid appsecret",
    40163: "code been used",
    41001: "access_token missing",
    42001: "access_token expired",
    43101: "user refuse to accept the msg",
    44002: "empty post data",
    45009: "reach max api daily quota limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    47001: "data format error",
    47003: "argument invalid!",
    48001: "api unauthorized",
    84001: "invalid identify id",
    84002: "user data expired",
    84003: "user data already used",
}
FORBIDDEN_TOKEN_ENDPOINT = 48001

_OPENID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_LIMITS = {"thing": 20, "name": 10, "phrase": 5, "number": 32, "letter": 32, "symbol": 5,
           "character_string": 32, "phone_number": 17, "car_number": 8}
WINDOW_SECONDS = 48 * 3600


def _error(errcode: int, detail: str = "") -> web.Response:
    message = ERRMSG.get(errcode, "error")
    return web.json_response({"errcode": errcode, "errmsg": f"{message}{(' ' + detail) if detail else ''} rid: fake"})


def _ok(**extra: Any) -> web.Response:
    return web.json_response({"errcode": 0, "errmsg": "ok", **extra})


class FakeWeChat:
    def __init__(self, app_id: str = APP_ID, secret: str = APP_SECRET, token_lifetime: int = 7200) -> None:
        self.app_id = app_id
        self.secret = secret
        self.token_lifetime = token_lifetime
        self.base_url = ""
        self.delay: dict[str, float] = {}
        self.reset()
        self.app = self._build_app()
        self._runner: web.AppRunner | None = None

    # --- configuration -------------------------------------------------------------------------

    def reset(self) -> None:
        self.tokens: dict[str, float] = {}  # token -> expiry (epoch seconds); absent = invalid
        self.current_token: str | None = None
        self.stable_token_calls = 0
        self.legacy_token_calls = 0
        self.requests: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.menus: list[dict[str, Any]] = []
        self.codes: dict[str, dict[str, str]] = {}
        self.used_codes: set[str] = set()
        self.grants: dict[tuple[str, str], int] = defaultdict(int)
        self.windows: dict[str, list[float]] = {}  # openid -> [deadline, messages left]
        self.faults: dict[str, deque[int | str]] = defaultdict(deque)
        self.templates: dict[str, set[str]] = {}
        self.face_results: dict[str, dict[str, Any]] = {}
        self.face_queried: set[str] = set()
        self.delay.clear()

    def add_code(self, code: str, openid: str, unionid: str | None = None, session_key: str | None = None) -> None:
        entry = {"openid": openid, "session_key": session_key or secrets.token_urlsafe(16)}
        if unionid:
            entry["unionid"] = unionid
        self.codes[code] = entry

    def add_face_result(
        self, verify_result: str, openid: str, id_number: str, name: str, *, identify_ret: int = 0,
        age_seconds: int = 0, expired: bool = False,
    ) -> None:
        """A face verification the mini-program ran ``age_seconds`` ago for this openid, name and
        number. ``expired``: WeChat no longer keeps the data (84002)."""
        finished = int(time.time()) - age_seconds
        self.face_results[verify_result] = {
            "openid": openid, "identify_ret": identify_ret, "identify_time": finished - 3,
            "finish_time": finished, "expired": expired,
            "id_card_number_md5": hashlib.md5(id_number.upper().encode()).hexdigest(),
            "name_utf8_md5": hashlib.md5(name.encode("utf-8")).hexdigest(),
        }

    def grant(self, openid: str, template_id: str, n: int = 1) -> None:
        self.grants[(openid, template_id)] += n

    def define_template(self, template_id: str, keys: list[str]) -> None:
        """Optional: with a definition, data keys outside it get 47003 like the real API."""
        self.templates[template_id] = set(keys)

    def open_window(self, openid: str, quota: int = 5) -> None:
        self.windows[openid] = [time.time() + WINDOW_SECONDS, quota]

    def close_window(self, openid: str) -> None:
        self.windows.pop(openid, None)

    def fail_next(self, path: str, errors: list[int | str]) -> None:
        """The next requests to ``path`` fail in this order: an int is a WeChat errcode answered
        with HTTP 200, ``"http:NNN"`` is a bare HTTP status, ``"drop"`` closes the connection."""
        self.faults[path.strip("/")].extend(errors)

    def expire_all_tokens(self) -> None:
        for token in self.tokens:
            self.tokens[token] = 0.0

    def sent_to(self, openid: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [s for s in self.sent if s["openid"] == openid and (kind is None or s["kind"] == kind)]

    def state(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "stable_token_calls": self.stable_token_calls,
            "legacy_token_calls": self.legacy_token_calls,
            "requests": len(self.requests),
            "menus": self.menus,
            "grants": [{"openid": o, "template_id": t, "available": n} for (o, t), n in self.grants.items()],
        }

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- the HTTP side -------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._record_and_inject])
        app.router.add_post(f"/{STABLE_TOKEN}", self._stable_token)
        app.router.add_route("*", f"/{LEGACY_TOKEN}", self._legacy_token)
        app.router.add_get(f"/{JSCODE2SESSION}", self._jscode2session)
        app.router.add_post(f"/{SUBSCRIBE_SEND}", self._subscribe_send)
        app.router.add_post(f"/{CUSTOM_SEND}", self._custom_send)
        app.router.add_post(f"/{MENU_CREATE}", self._menu_create)
        app.router.add_post(f"/{FACE_GETINFO}", self._face_getinfo)
        app.router.add_get("/_fake/sent", self._control_sent)
        app.router.add_post("/_fake/control", self._control)
        return app

    @web.middleware
    async def _record_and_inject(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path.strip("/")
        if path.startswith("_fake/"):
            return await handler(request)
        raw = await request.read()
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self.requests.append({"path": path, "method": request.method, "query": dict(request.query), "json": body})
        if self.delay.get(path):
            await asyncio.sleep(self.delay[path])
        if self.faults.get(path):
            fault = self.faults[path].popleft()
            if path == STABLE_TOKEN:
                self.stable_token_calls += 1
            if isinstance(fault, int):
                return _error(fault, "(injected)")
            if fault == "drop":
                request.transport.close()  # the client sees the connection die mid-request
                return web.Response(status=500)
            if isinstance(fault, str) and fault.startswith("http:"):
                return web.Response(status=int(fault[5:]), text="upstream error")
        return await handler(request)

    def _check_token(self, request: web.Request) -> web.Response | None:
        token = request.query.get("access_token")
        if not token:
            return _error(41001)
        if token not in self.tokens or token != self.current_token:
            return _error(40001)
        if self.tokens[token] <= time.time():
            return _error(42001)
        return None

    async def _json(self, request: web.Request) -> dict[str, Any] | None:
        try:
            body = json.loads((await request.read()).decode("utf-8"))
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def _authorised_body(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        """The JSON body of an API call, or the error WeChat answers: token first, then 47001."""
        refused = self._check_token(request)
        if refused:
            return {}, refused
        body = await self._json(request)
        return (body, None) if body is not None else ({}, _error(47001))

    async def _legacy_token(self, request: web.Request) -> web.Response:
        self.legacy_token_calls += 1
        return _error(FORBIDDEN_TOKEN_ENDPOINT, "use stable_token")

    async def _stable_token(self, request: web.Request) -> web.Response:
        self.stable_token_calls += 1
        body = await self._json(request)
        if body is None:
            return _error(47001)
        if body.get("grant_type") != "client_credential":
            return _error(40002 if body.get("grant_type") else 47001)
        if body.get("appid") != self.app_id:
            return _error(40013)
        if body.get("secret") != self.secret:
            return _error(40125)
        now = time.time()
        current = self.current_token
        # normal mode returns the live token until its last 5 minutes; force_refresh replaces it
        if body.get("force_refresh") or current is None or self.tokens.get(current, 0) - now < 300:
            current = "fake-token-" + secrets.token_hex(8)
            self.tokens[current] = now + self.token_lifetime
            self.current_token = current
        return web.json_response({"access_token": current, "expires_in": int(self.tokens[current] - now)})

    async def _jscode2session(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("appid") != self.app_id:
            return _error(40013)
        if query.get("secret") != self.secret:
            return _error(40125)
        code = query.get("js_code", "")
        if code in self.used_codes:
            return _error(40163)
        if code not in self.codes:
            return _error(40029)
        self.used_codes.add(code)
        # the real endpoint answers JSON with Content-Type text/plain
        return web.Response(text=json.dumps(self.codes.pop(code)), content_type="text/plain")

    async def _subscribe_send(self, request: web.Request) -> web.Response:
        body, refused = await self._authorised_body(request)
        if refused:
            return refused
        openid, template_id, data = body.get("touser", ""), body.get("template_id", ""), body.get("data")
        if not isinstance(openid, str) or not _OPENID.match(openid):
            return _error(40003)
        if not template_id or not isinstance(data, dict) or not data:
            return _error(47003, "data or template_id missing")
        bad = self._bad_field(template_id, data)
        if bad:
            return _error(47003, f"data.{bad}.value invalid")
        if self.grants[(openid, template_id)] <= 0:
            return _error(43101)
        self.grants[(openid, template_id)] -= 1
        msgid = secrets.randbelow(10**18)
        self.sent.append({"kind": "subscribe", "openid": openid, "template_id": template_id,
                          "data": {k: v["value"] for k, v in data.items()}, "page": body.get("page"),
                          "miniprogram_state": body.get("miniprogram_state"), "msgid": msgid, "at": time.time()})
        return _ok(msgid=msgid)

    def _bad_field(self, template_id: str, data: dict[str, Any]) -> str | None:
        allowed = self.templates.get(template_id)
        for key, wrapped in data.items():
            value = wrapped.get("value") if isinstance(wrapped, dict) else None
            if not isinstance(value, str) or not value or (allowed is not None and key not in allowed):
                return key
            limit = _LIMITS.get(key.rstrip("0123456789"))
            if limit is not None and len(value) > limit:
                return key
        return None

    async def _custom_send(self, request: web.Request) -> web.Response:
        body, refused = await self._authorised_body(request)
        if refused:
            return refused
        openid = body.get("touser", "")
        if not isinstance(openid, str) or not _OPENID.match(openid):
            return _error(40003)
        window = self.windows.get(openid)
        if window is None or window[0] <= time.time():
            return _error(45015)
        if window[1] <= 0:
            return _error(45047)
        if body.get("msgtype") != "text" or not isinstance(body.get("text"), dict):
            return _error(47001)
        window[1] -= 1
        self.sent.append({"kind": "custom", "openid": openid, "text": body["text"].get("content", ""),
                          "at": time.time()})
        return _ok()

    async def _menu_create(self, request: web.Request) -> web.Response:
        body, refused = await self._authorised_body(request)
        if refused:
            return refused
        if not isinstance(body.get("button"), list) or not body["button"]:
            return _error(47001)
        self.menus.append(body)
        return _ok()

    async def _face_getinfo(self, request: web.Request) -> web.Response:
        body, refused = await self._authorised_body(request)
        if refused:
            return refused
        verify_result = body.get("verify_result")
        if not isinstance(verify_result, str) or verify_result not in self.face_results:
            return _error(84001)
        if verify_result in self.face_queried:
            return _error(84003)
        entry = self.face_results[verify_result]
        if entry["expired"]:
            return _error(84002)
        if not _OPENID.match(entry["openid"]):
            return _error(40003)
        self.face_queried.add(verify_result)
        return _ok(identify_ret=entry["identify_ret"], identify_time=entry["identify_time"],
                   validate_data="fake-validate-" + secrets.token_hex(4), openid=entry["openid"],
                   user_id_key="fake-uik-" + secrets.token_hex(8), finish_time=entry["finish_time"],
                   id_card_number_md5=entry["id_card_number_md5"], name_utf8_md5=entry["name_utf8_md5"])

    async def _control_sent(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _control(self, request: web.Request) -> web.Response:
        body = await self._json(request) or {}
        action = body.get("action")
        if action == "grant":
            self.grant(body["openid"], body["template_id"], int(body.get("n", 1)))
        elif action == "open_window":
            self.open_window(body["openid"], int(body.get("quota", 5)))
        elif action == "close_window":
            self.close_window(body["openid"])
        elif action == "add_code":
            self.add_code(body["code"], body["openid"], body.get("unionid"))
        elif action == "fail_next":
            self.fail_next(body["path"], list(body["errors"]))
        elif action == "delay":
            self.delay[body["path"].strip("/")] = float(body["seconds"])
        elif action == "add_face_result":
            self.add_face_result(body["verify_result"], body["openid"], body["id_number"], body["name"],
                                 identify_ret=int(body.get("identify_ret", 0)),
                                 age_seconds=int(body.get("age_seconds", 0)), expired=bool(body.get("expired")))
        elif action == "expire_all_tokens":
            self.expire_all_tokens()
        elif action == "reset":
            self.reset()
        else:
            return web.json_response({"ok": False, "error": f"unknown action {action!r}"}, status=400)
        return web.json_response({"ok": True})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake WeChat API for tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--app-id", default=APP_ID)
    parser.add_argument("--secret", default=APP_SECRET)
    args = parser.parse_args(argv)

    async def serve() -> None:
        fake = FakeWeChat(args.app_id, args.secret)
        print(f"ready {await fake.start(args.host, args.port)}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await fake.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
