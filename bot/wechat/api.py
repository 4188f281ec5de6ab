"""Asynchronous client of the WeChat API on aiohttp (wechatpy's own client is synchronous).

Calls: ``code2session`` (mini-program login), ``send_subscribe_message`` (mini-program subscribe
message), ``send_custom_text`` (customer-service message), ``create_menu`` and
``face_identify_info`` (the result of a mini-program face verification, 微信人脸核身).

Access token: always ``cgi-bin/stable_token`` — ``cgi-bin/token`` would invalidate the token of
every other caller. The token is cached in MongoDB (``wechat_tokens``, ``_id`` = AppID) and
refreshed a little before it expires. One refresh at a time: inside a process an asyncio lock,
across instances the lease ``wechat_token:<appid>`` (bot.leases); whoever does not hold it waits
and re-reads the cache. On 40001/40014/42001 the client force-refreshes once (unless another
caller already replaced that token) and retries the call once.

Errors: every failure raises a ``WeChatError(errcode, errmsg)``; ``.transient`` says whether a
retry can help (``WeChatTransientError``: timeouts, connection errors, HTTP 5xx, -1, 45009 …) or
not (``WeChatPermanentError``: 43101, 47003, 40003, 45015/45047, 48001 …). Failures without a
WeChat answer carry negative pseudo-codes (``TRANSPORT_TIMEOUT`` …). ``.ambiguous`` is True when
the request may have reached WeChat (time-out, connection lost after sending, HTTP 5xx): a send
that failed this way may still have been delivered.

Retries: transient errors are retried inline with exponential backoff and jitter according to a
``RetryPolicy`` (constructor default, or per call ``retry=NO_RETRY`` for a dispatcher that retries
on its own schedule). Every request has a time-out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import Counter
from pymongo.asynchronous.database import AsyncDatabase

from bot import leases
from bot.config import Settings
from bot.keys import DB, SETTINGS
from bot.wechat.template_fields import problems

log = logging.getLogger(__name__)

TOKENS_COLLECTION = "wechat_tokens"

# WeChat error codes (全局返回码) the product meets.
OK = 0
SYSTEM_BUSY = -1
INVALID_CREDENTIAL = 40001  # access token invalid or not the latest
INVALID_OPENID = 40003
INVALID_ACCESS_TOKEN = 40014
INVALID_CODE = 40029  # js_code invalid
CODE_BEEN_USED = 40163
ACCESS_TOKEN_EXPIRED = 42001
FACE_INVALID_VERIFY_RESULT = 84001  # invalid verify_result (identify id)
FACE_DATA_EXPIRED = 84002  # the user's verification data expired
FACE_RESULT_USED = 84003  # the verify_result was used (queried) before
NO_SUBSCRIPTION = 43101  # the user has no subscribe grant left for the template
API_DAILY_LIMIT = 45009
API_MINUTE_LIMIT = 45011
OUT_OF_REPLY_WINDOW = 45015  # customer-service message outside 48 h after the user's last message
OUT_OF_REPLY_COUNT = 45047  # customer-service message quota of that window used up
INVALID_TEMPLATE_DATA = 47003
API_UNAUTHORIZED = 48001
# Pseudo-codes for failures that produced no WeChat answer (never sent by WeChat itself).
TRANSPORT_TIMEOUT = -1001
TRANSPORT_ERROR = -1002
HTTP_STATUS_ERROR = -1003
BAD_RESPONSE = -1004
NOT_CONFIGURED = -1005
TOKEN_BUSY = -1006  # another instance holds the token lease for too long

TOKEN_ERRORS = frozenset({INVALID_CREDENTIAL, INVALID_ACCESS_TOKEN, ACCESS_TOKEN_EXPIRED})
TRANSIENT_ERRORS = frozenset({
    SYSTEM_BUSY, API_DAILY_LIMIT, API_MINUTE_LIMIT, *TOKEN_ERRORS,
    TRANSPORT_TIMEOUT, TRANSPORT_ERROR, HTTP_STATUS_ERROR, BAD_RESPONSE, TOKEN_BUSY,
})

WECHAT_API_CALLS = Counter(
    "wechat_api_calls_total", "WeChat API requests by API and outcome (ok or errcode)", ["api", "outcome"]
)


class WeChatError(Exception):
    transient = False

    def __init__(self, errcode: int, errmsg: str, *, api: str = "", ambiguous: bool = False) -> None:
        super().__init__(f"{api or 'wechat'}: {errcode} {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.api = api
        self.ambiguous = ambiguous


class WeChatTransientError(WeChatError):
    """A later retry may succeed (busy, rate-limited, time-out, network, 5xx)."""

    transient = True


class WeChatPermanentError(WeChatError):
    """Retrying the same request cannot help (no grant, bad data, bad openid, window closed …)."""

    transient = False


def error_for(errcode: int, errmsg: str, *, api: str = "", ambiguous: bool = False) -> WeChatError:
    kind = WeChatTransientError if errcode in TRANSIENT_ERRORS else WeChatPermanentError
    return kind(errcode, errmsg, api=api, ambiguous=ambiguous)


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; between them sleep ``min(max_delay, base_delay * 2**n)``, half of it
    fixed and half random (jitter), so many clients do not retry in step."""

    attempts: int = 3
    base_delay: float = 0.2
    max_delay: float = 2.0

    def delay(self, retry_number: int) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2**retry_number)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


NO_RETRY = RetryPolicy(attempts=1)


class WeChatClient:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        db: AsyncDatabase,
        settings: Settings,
        *,
        retry: RetryPolicy = RetryPolicy(),
        timeout: float = 5.0,
        refresh_margin: timedelta = timedelta(minutes=3),
        holder: str | None = None,
    ) -> None:
        self._http = http
        self._db = db
        self._base = settings.wechat_api_base.rstrip("/")
        self._app_id = settings.wechat_app_id
        self._secret = settings.wechat_app_secret
        self.retry = retry
        self.timeout = timeout
        self.refresh_margin = refresh_margin
        self._holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._token_lock = asyncio.Lock()
        # this process's copy of the shared cached token: saves a database read per API call (added
        # for the outbox dispatcher); dropped when WeChat rejects the token
        self._token_copy: dict[str, Any] | None = None
        self._lease_ttl = timedelta(seconds=timeout * 2 + 5)

    @property
    def configured(self) -> bool:
        return bool(self._app_id and self._secret)

    # --- the API calls -------------------------------------------------------------------------

    async def code2session(self, js_code: str, *, retry: RetryPolicy | None = None) -> dict[str, Any]:
        """Exchange a mini-program ``wx.login`` code: ``{"openid", "session_key", "unionid"?}``."""
        if not js_code or len(js_code) > 256:
            raise WeChatPermanentError(INVALID_CODE, "invalid code", api="sns/jscode2session")
        self._require_configuration()
        query = {"appid": self._app_id, "secret": self._secret, "js_code": js_code,
                 "grant_type": "authorization_code"}
        payload = await self._call("sns/jscode2session", method="GET", query=query, with_token=False, retry=retry)
        if not payload.get("openid"):
            raise WeChatTransientError(BAD_RESPONSE, "no openid in answer", api="sns/jscode2session")
        return {k: payload[k] for k in ("openid", "session_key", "unionid") if payload.get(k)}

    async def send_subscribe_message(
        self,
        openid: str,
        template_id: str,
        data: dict[str, str],
        page: str | None = None,
        miniprogram_state: str | None = None,
        *,
        lang: str = "zh_CN",
        retry: RetryPolicy | None = None,
    ) -> None:
        """Send one subscribe message (uses one grant at WeChat). Field values are checked first;
        a value that breaks its type's rule raises ``WeChatPermanentError(47003)`` without a call."""
        api = "cgi-bin/message/subscribe/send"
        found = problems(data)
        if found:
            raise WeChatPermanentError(INVALID_TEMPLATE_DATA, "; ".join(found), api=api)
        body: dict[str, Any] = {
            "touser": openid, "template_id": template_id, "lang": lang,
            "data": {key: {"value": value} for key, value in data.items()},
        }
        if page:
            body["page"] = page
        if miniprogram_state:
            body["miniprogram_state"] = miniprogram_state
        await self._call(api, body=body, retry=retry)

    async def send_custom_text(self, openid: str, text: str, *, retry: RetryPolicy | None = None) -> None:
        """A customer-service text message (only within 48 h of the user's last message)."""
        body = {"touser": openid, "msgtype": "text", "text": {"content": text}}
        await self._call("cgi-bin/message/custom/send", body=body, retry=retry)

    async def create_menu(self, menu: dict[str, Any], *, retry: RetryPolicy | None = None) -> None:
        await self._call("cgi-bin/menu/create", body=menu, retry=retry)

    async def face_identify_info(self, verify_result: str, *, retry: RetryPolicy | None = None) -> dict[str, Any]:
        """WeChat's record of a mini-program face verification (``cityservice/face/identify/getinfo``):
        ``identify_ret`` (0 = passed), ``identify_time`` (Unix seconds), ``openid``,
        ``id_card_number_md5``, ``name_utf8_md5``, ``validate_data``, ``user_id_key``, ``finish_time``.
        The answer is returned as it came; judging it is the caller's (``bot.settlements.verification``).
        Errors 84001 (invalid verify_result), 84002 (data expired), 84003 (already used), 40003 raise
        ``WeChatPermanentError``. Not retried by default: WeChat answers a result only once, so a
        retry after a time-out that did reach WeChat would come back as 84003."""
        api = "cityservice/face/identify/getinfo"
        if not verify_result or len(verify_result) > 1024:
            raise WeChatPermanentError(FACE_INVALID_VERIFY_RESULT, "invalid verify_result", api=api)
        payload = await self._call(api, body={"verify_result": verify_result}, retry=retry or NO_RETRY)
        if "identify_ret" not in payload:
            raise WeChatTransientError(BAD_RESPONSE, "no identify_ret in answer", api=api)
        return payload

    # --- access token --------------------------------------------------------------------------

    async def access_token(self) -> str:
        """A valid access token: from the shared cache, or freshly fetched by one caller at a time."""
        self._require_configuration()
        if self._fresh(self._token_copy):
            return self._token_copy["access_token"]
        return await self._refresh(stale=None)

    def _keep(self, document: dict[str, Any]) -> str:
        self._token_copy = document
        return document["access_token"]

    def _fresh(self, document: dict[str, Any] | None, stale: str | None = None) -> bool:
        if not document:
            return False
        if stale is not None:  # replacing a token WeChat rejected: any other live token will do
            return document["access_token"] != stale and document["expires_at"] > datetime.now(UTC)
        return document["expires_at"] > datetime.now(UTC) + self.refresh_margin

    async def _refresh(self, stale: str | None) -> str:
        """Fetch a new token, unless someone else did meanwhile. ``stale``: the token WeChat just
        rejected (force a new one); None: the cached one is (nearly) expired."""
        lease = f"wechat_token:{self._app_id}"
        collection = self._db[TOKENS_COLLECTION]
        async with self._token_lock:  # a burst of callers (the dispatcher's) reads the cache once
            if self._fresh(self._token_copy, stale):  # read or refreshed by the caller before us
                return self._token_copy["access_token"]
            deadline = time.monotonic() + self._lease_ttl.total_seconds() + self.timeout + 5
            while True:
                document = await collection.find_one({"_id": self._app_id})
                if self._fresh(document, stale):
                    return self._keep(document)
                if await leases.acquire(self._db, lease, self._holder, self._lease_ttl):
                    try:
                        document = await collection.find_one({"_id": self._app_id})
                        if self._fresh(document, stale):
                            return self._keep(document)
                        return await self._fetch_token(force=stale is not None)
                    finally:
                        await leases.release(self._db, lease, self._holder)
                if time.monotonic() > deadline:
                    raise WeChatTransientError(TOKEN_BUSY, "token refresh held elsewhere", api="cgi-bin/stable_token")
                await asyncio.sleep(0.05 + random.uniform(0, 0.05))

    async def _fetch_token(self, *, force: bool) -> str:
        body = {"grant_type": "client_credential", "appid": self._app_id, "secret": self._secret,
                "force_refresh": force}
        payload = await self._request("cgi-bin/stable_token", "POST", body=body)
        token, expires_in = payload.get("access_token"), payload.get("expires_in")
        if not isinstance(token, str) or not isinstance(expires_in, int):
            raise WeChatTransientError(BAD_RESPONSE, "no access_token in answer", api="cgi-bin/stable_token")
        now = datetime.now(UTC)
        fields = {"access_token": token, "expires_at": now + timedelta(seconds=expires_in),
                  "refreshed_at": now, "forced": force, "refreshed_by": self._holder}
        await self._db[TOKENS_COLLECTION].update_one({"_id": self._app_id}, {"$set": fields}, upsert=True)
        log.info("wechat access token refreshed", extra={"forced": force, "expires_in": expires_in})
        return self._keep({"_id": self._app_id, **fields})

    def _require_configuration(self) -> None:
        if not self.configured:
            raise WeChatPermanentError(NOT_CONFIGURED, "WECHAT_APP_ID / WECHAT_APP_SECRET not set")

    # --- transport -----------------------------------------------------------------------------

    async def _call(
        self,
        api: str,
        *,
        method: str = "POST",
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
        with_token: bool = True,
        retry: RetryPolicy | None = None,
    ) -> dict[str, Any]:
        policy = retry or self.retry
        failures = 0
        token_replaced = False
        while True:
            token: str | None = None
            try:
                if with_token:
                    token = await self.access_token()
                return await self._request(api, method, body=body, query=query, token=token)
            except WeChatError as exc:
                if token is not None and exc.errcode in TOKEN_ERRORS and not token_replaced:
                    token_replaced = True  # refresh once and retry once; not counted as a failure
                    self._token_copy = None
                    log.warning("wechat rejected the access token", extra={"api": api, "errcode": exc.errcode})
                    await self._refresh(stale=token)
                    continue
                failures += 1
                if not exc.transient or failures >= policy.attempts:
                    raise
                log.info("wechat call failed, retrying",
                         extra={"api": api, "errcode": exc.errcode, "attempt": failures})
                await asyncio.sleep(policy.delay(failures - 1))

    async def _request(
        self,
        api: str,
        method: str,
        *,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        params = dict(query or {})
        if token is not None:
            params["access_token"] = token
        # ensure_ascii=False: WeChat shows \\u escapes literally in menus and messages
        data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
        headers = {"Content-Type": "application/json; charset=utf-8"} if data is not None else None
        try:
            async with self._http.request(
                method, f"{self._base}/{api}", params=params, data=data, headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                raw = await response.read()
                status = response.status
        except TimeoutError:
            raise self._failed(api, TRANSPORT_TIMEOUT, "timed out", ambiguous=True) from None
        except aiohttp.ClientConnectorError as exc:  # never connected: the request was not sent
            raise self._failed(api, TRANSPORT_ERROR, type(exc).__name__) from None
        except aiohttp.ClientError as exc:
            raise self._failed(api, TRANSPORT_ERROR, type(exc).__name__, ambiguous=True) from None
        if status >= 500:
            raise self._failed(api, HTTP_STATUS_ERROR, f"HTTP {status}", ambiguous=True)
        if status != 200:
            raise self._failed(api, HTTP_STATUS_ERROR, f"HTTP {status}", permanent=True)
        try:
            # jscode2session answers with text/plain, so read the body ourselves
            payload = json.loads(raw.decode("utf-8"))
        except ValueError:
            raise self._failed(api, BAD_RESPONSE, "answer is not JSON") from None
        if not isinstance(payload, dict):
            raise self._failed(api, BAD_RESPONSE, "answer is not a JSON object")
        errcode = payload.get("errcode") or OK
        if errcode != OK:
            raise self._failed(api, int(errcode), str(payload.get("errmsg", "")))
        WECHAT_API_CALLS.labels(api, "ok").inc()
        return payload

    def _failed(
        self, api: str, errcode: int, errmsg: str, *, ambiguous: bool = False, permanent: bool = False
    ) -> WeChatError:
        WECHAT_API_CALLS.labels(api, str(errcode)).inc()
        if permanent:
            return WeChatPermanentError(errcode, errmsg, api=api, ambiguous=ambiguous)
        return error_for(errcode, errmsg, api=api, ambiguous=ambiguous)


WECHAT: web.AppKey[WeChatClient] = web.AppKey("wechat")


async def wechat_context(app: web.Application) -> AsyncIterator[None]:
    """One HTTP connection pool and one WeChat client for the application's lifetime."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as http:
        app[WECHAT] = WeChatClient(http, app[DB], app[SETTINGS])
        yield
