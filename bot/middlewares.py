"""Request id, metrics, body limit and deadline, security headers and the JSON error envelope.

Under ``/api/`` every error is ``{"error": {"code", "message"}}``, including the ones aiohttp answers
itself before any middleware runs: a request line its parser refuses (an unencoded ``?q=骗保``, a
line too long) never reaches the application, so ``install`` swaps in a ``RequestHandler`` whose
``handle_error`` answers with the envelope too. Client mistakes are logged at INFO at most, without
a traceback; a client that hangs up is not an error; only our own failures are logged at ERROR.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, InvalidURLError
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from bot.errors import ApiError
from bot.keys import SETTINGS
from bot.logs import RequestOrigin, request_id_var, request_origin_var
from bot.metrics import HTTP_LATENCY, HTTP_REQUESTS
from bot.web import error_response

log = logging.getLogger(__name__)

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# Chinese messages for errors that aiohttp raises itself (routing, limits).
_HTTP_ERRORS = {
    400: ("bad_request", "请求格式不正确"),
    401: ("unauthorized", "请先登录"),
    403: ("forbidden", "没有权限执行此操作"),
    404: ("not_found", "找不到该资源"),
    405: ("method_not_allowed", "不支持该请求方法"),
    408: ("body_timeout", "请求内容未在规定时间内收到"),
    413: ("body_too_large", "请求内容过大"),
    415: ("unsupported_media_type", "不支持的内容类型"),
    429: ("too_many_requests", "请求过于频繁，请稍后再试"),
}
INTERNAL_ERROR = ApiError(500, "internal_error", "服务器内部错误，请稍后再试")
BODY_TIMEOUT = ApiError(408, "body_timeout", "请求内容未在规定时间内收到，请重试")
CLIENT_CLOSED = 499  # nginx's status for a request whose client hung up; never reaches the client

# Paths that read their body themselves, with their own limit and deadline (the WeChat callback).
OWN_BODY_READ = ("/wechat/",)

# GETs any visitor may make without credentials and whose answers hold no personal data: these may
# be cached; every other /api/ response (tokens, bookings, patients, settlements …) is ``no-store``.
PUBLIC_GET_PREFIXES = ("/api/v1/faq/", "/api/v1/institutions", "/api/v1/slots", "/api/v1/openapi.json")
SERVER_HEADER = "yibao"  # no product version in the Server header

SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff"}


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    token = request_id_var.set(request_id)
    origin = request_origin_var.set(_origin(request) if request.path.startswith("/api/") else None)
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers["X-Request-ID"] = request_id
            raise
        response.headers["X-Request-ID"] = request_id
        return response
    finally:
        request_origin_var.reset(origin)
        request_id_var.reset(token)


def client_address(request: web.Request) -> str:
    """The client's address: the socket peer, or behind a trusted reverse proxy the last address it
    appended to X-Forwarded-For (earlier entries are whatever the client claimed)."""
    if request.app[SETTINGS].trust_x_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "").rsplit(",", 1)[-1].strip()
        if forwarded:
            return forwarded[:64]
    return request.remote or "unknown"


def _origin(request: web.Request) -> RequestOrigin:
    return RequestOrigin(client_address(request), request.app[SETTINGS].faq_gaps_per_address_per_day)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = _route_name(request)
        HTTP_REQUESTS.labels(route, request.method, str(status)).inc()
        HTTP_LATENCY.labels(route, request.method).observe(time.perf_counter() - started)


class BodyTimeoutError(ApiError, TimeoutError):
    """A 408 for the handler reading the body; a TimeoutError for aiohttp, which then drops the rest of
    the body quietly instead of logging its read as an unhandled exception."""

    def __init__(self) -> None:
        super().__init__(408, BODY_TIMEOUT.code, BODY_TIMEOUT.message)


def _body_deadline(request: web.Request, deadline: float) -> asyncio.TimerHandle | None:
    """After ``deadline`` seconds, a body not yet fully received fails its reader with a 408, so a
    client trickling a byte at a time cannot hold a connection and a handler open indefinitely.
    The body is not read here: handlers read it (or not) as before, ``can_read_body`` unchanged."""
    if not request.body_exists or request.path.startswith(OWN_BODY_READ):
        return None
    payload = request.content

    def expire() -> None:
        if not payload.is_eof():
            log.info("request body not received in time", extra={"path": request.path, "deadline_s": deadline})
            payload.set_exception(BodyTimeoutError())

    return asyncio.get_running_loop().call_later(deadline, expire)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors under /api/ become the JSON envelope; nowhere does a traceback reach the client."""
    is_api = request.path.startswith("/api/")
    try:
        settings = request.app[SETTINGS]
        limit = settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
        deadline = _body_deadline(request, settings.body_read_timeout_seconds)
        try:
            return await handler(request)
        finally:
            if deadline is not None:
                deadline.cancel()
    except ApiError as exc:
        if exc.status == 408:
            return _closing(error_response(exc))
        return error_response(exc)
    except web.HTTPException as exc:
        if not is_api or exc.status < 400:
            raise
        code, message = _HTTP_ERRORS.get(exc.status, ("http_error", "请求失败"))
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return error_response(ApiError(exc.status, code, message), headers)
    except ConnectionError:
        # The client hung up (mid-body, mid-response): nothing to answer and nothing of ours failed.
        log.info("client disconnected", extra={"path": request.path, "method": request.method})
        return web.Response(status=CLIENT_CLOSED, reason="Client Closed Request")
    except Exception:
        log.exception("unhandled error", extra={"path": request.path, "method": request.method})
        if is_api:
            return error_response(INTERNAL_ERROR)
        return web.Response(status=500, text="Internal Server Error")


def _closing(response: web.Response) -> web.Response:
    response.force_close()  # the rest of a body that did not arrive in time is not waited for
    return response


def _needs_no_store(request: web.BaseRequest) -> bool:
    credentials = "Authorization" in request.headers or "Cookie" in request.headers
    if credentials:
        return True
    if not request.path.startswith("/api/"):
        return False
    return not (request.method in ("GET", "HEAD") and request.path.startswith(PUBLIC_GET_PREFIXES))


def security_headers(request: web.BaseRequest, headers: Any) -> None:
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    headers["Server"] = SERVER_HEADER
    if _needs_no_store(request):
        headers["Cache-Control"] = "no-store"


async def _on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    security_headers(request, response.headers)


# --- errors aiohttp answers before the application sees the request ------------------------------

class ApiRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering its own errors with our envelope and log levels."""

    __slots__ = ()

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500 and not isinstance(exc, ConnectionError):
            log.error("error handling request", exc_info=exc, extra={"status": status})
        else:  # a request aiohttp's parser refused, or a client gone: the client's business
            log.info("bad request refused by the HTTP parser", extra={
                "status": status, "reason": type(exc).__name__ if exc else None})
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        if status >= 500:
            error = INTERNAL_ERROR if status == 500 else ApiError(status, "http_error", "请求失败")
        elif isinstance(exc, InvalidURLError):
            error = ApiError(status, "invalid_url", "请求地址格式不正确（地址和参数中的中文等字符须经 URL 编码）")
        elif isinstance(exc, HttpProcessingError) and status == 400:
            error = ApiError(status, "bad_request", "请求格式不正确")
        else:
            code, text = _HTTP_ERRORS.get(status, ("http_error", "请求失败"))
            error = ApiError(status, code, text)
        response = error_response(error)
        security_headers(request, response.headers)
        response.headers["Cache-Control"] = "no-store"
        response.force_close()
        return response


class ApiServer(Server):
    def __call__(self) -> RequestHandler:
        return ApiRequestHandler(self, loop=self._loop, **self._kwargs)


def install(app: web.Application) -> None:
    """Security headers on every response, and the envelope for aiohttp's own parser errors.

    aiohttp builds its connection handler in ``Application._make_handler``, with no public hook for
    the handler class (``handler_args`` only passes keyword arguments), so the server it returns is
    given our subclass. Both ``web.run_app`` and the test client go through ``_make_handler``.
    """
    app.on_response_prepare.append(_on_response_prepare)
    make_handler = app._make_handler

    def make_api_handler(**kwargs: Any) -> Server:
        server = make_handler(**kwargs)
        server.__class__ = ApiServer
        return server

    app._make_handler = make_api_handler  # type: ignore[method-assign]


MIDDLEWARES = [request_id_middleware, metrics_middleware, error_middleware]
