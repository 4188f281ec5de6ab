"""Structured logging: JSON lines when stderr is not a terminal, readable lines when it is.

Every record passes through ``mask_text`` so a phone or ID number that slips into a message is
masked anyway; names cannot be recognised in free text, so callers mask them with ``mask_name``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from dataclasses import dataclass

from bot.masking import mask_text

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


@dataclass(frozen=True)
class RequestOrigin:
    """Who sent the API request being handled, for per-asker quotas in the domains (FAQ gaps)."""

    address: str  # the client address (X-Forwarded-For's last hop when TRUST_X_FORWARDED_FOR is set)
    faq_gaps_per_day: int


# Set by the HTTP middleware for /api/ requests only (the WeChat callback comes from WeChat's servers).
request_origin_var: contextvars.ContextVar[RequestOrigin | None] = contextvars.ContextVar("request_origin",
                                                                                          default=None)

_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": mask_text(record.getMessage()),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in _extras(record).items():
            entry[key] = mask_text(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = mask_text(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class ConsoleFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = mask_text(super().format(record))
        extras = _extras(record)
        request_id = request_id_var.get()
        if request_id:
            extras = {"request_id": request_id, **extras}
        if extras:
            line += " " + " ".join(f"{k}={mask_text(str(v))}" for k, v in extras.items())
        return line


def configure_logging(level: str = "INFO", json_lines: bool | None = None) -> None:
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiohttp.access", "jieba", "apscheduler.executors.default", "pymongo"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
