"""Settings read from environment variables and validated once at start.

Each setting is declared once in ``FIELDS``: its variable, parser and default. An invalid value
raises ``SettingsError`` whose message names the variable in Chinese and English; the CLI turns
it into a one-line message and exit status 2.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class SettingsError(ValueError):
    def __init__(self, variable: str, zh: str, en: str) -> None:
        self.variable = variable
        super().__init__(f"配置错误 {variable}：{zh} / invalid {variable}: {en}")


def _port(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 65535:
        raise ValueError("out of range")
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be positive")
    return value


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in logging.getLevelNamesMapping():
        raise ValueError("unknown level")
    return level


def _mongodb_uri(raw: str) -> str:
    if not raw.startswith(("mongodb://", "mongodb+srv://")):
        raise ValueError("must start with mongodb:// or mongodb+srv://")
    return raw


def _db_name(raw: str) -> str:
    if not raw or any(c in raw for c in '/\\. "$') or len(raw) > 63:
        raise ValueError("not a valid database name")
    return raw


def _http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL")
    return raw.rstrip("/")


def _aes_key(raw: str) -> str:
    if len(raw) != 43:
        raise ValueError("EncodingAESKey must be 43 characters")
    return raw


def _text(raw: str) -> str:
    return raw


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


# variable -> (parser, Chinese description used in error messages)
_PARSERS: dict[str, tuple[Callable[[str], Any], str]] = {
    "port": (_port, "端口必须是 1 到 65535 之间的整数"),
    "positive_int": (_positive_int, "必须是正整数"),
    "log_level": (_log_level, "日志级别应为 DEBUG/INFO/WARNING/ERROR"),
    "mongodb_uri": (_mongodb_uri, "必须以 mongodb:// 或 mongodb+srv:// 开头"),
    "db_name": (_db_name, "不是有效的数据库名"),
    "http_url": (_http_url, "必须是 http(s) 地址"),
    "aes_key": (_aes_key, "EncodingAESKey 必须是 43 个字符"),
    "text": (_text, "格式不正确"),
    "bool": (_bool, "必须是 true 或 false"),
}


def _setting(kind: str, default: Any = None) -> Any:
    return field(default=default, metadata={"kind": kind})


@dataclass(frozen=True)
class Settings:
    """Every field is read from the upper-case environment variable of the same name."""

    host: str = _setting("text", "127.0.0.1")
    port: int = _setting("port", 8080)
    mongodb_uri: str | None = _setting("mongodb_uri")  # None: start the embedded database
    mongodb_db: str = _setting("db_name", "yibao")
    data_dir: Path = _setting("text", Path("./var"))
    log_level: str = _setting("log_level", "INFO")
    max_body_bytes: int = _setting("positive_int", 1024 * 1024)
    admin_token: str | None = _setting("text")
    wechat_app_id: str | None = _setting("text")
    wechat_app_secret: str | None = _setting("text")
    wechat_token: str | None = _setting("text")
    wechat_encoding_aes_key: str | None = _setting("aes_key")
    wechat_safe_mode_only: bool = _setting("bool", True)  # with an EncodingAESKey: refuse plain-mode callbacks
    wechat_api_base: str = _setting("http_url", "https://api.weixin.qq.com")
    max_active_bookings: int = _setting("positive_int", 5)
    waitlist_offer_minutes: int = _setting("positive_int", 30)
    wechat_reply_timeout_ms: int = _setting("positive_int", 4000)
    wechat_miniprogram_app_id: str | None = _setting("text")
    booking_horizon_days: int = _setting("positive_int", 14)  # days of slots kept generated ahead
    demo_staff_password: str | None = _setting("text")  # seed-demo: password of the demo staff accounts
    settlement_webhook_secret: str | None = _setting("text")  # HMAC secret shared with the settlement system
    identity_hash_key: str | None = _setting("text")  # key of the ID-number hash; required in production
    wechat_template_ids: str | None = _setting("text")  # "kind=template_id,…" overriding bot/notify/data/templates.yaml
    outbox_concurrency: int = _setting("positive_int", 64)  # notifications sent at once per instance
    outbox_lease_seconds: int = _setting("positive_int", 60)  # a claimed notification is reclaimed after this
    outbox_max_attempts: int = _setting("positive_int", 8)  # transient failures before a notification fails
    outbox_retry_base_seconds: int = _setting("positive_int", 10)  # first retry delay (doubles, with jitter)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            variable = f.name.upper()
            raw = env.get(variable)
            if raw is None or raw == "":
                continue
            parser, zh = _PARSERS[f.metadata["kind"]]
            try:
                value = parser(raw)
            except ValueError as exc:
                raise SettingsError(variable, zh, str(exc) or "invalid value") from None
            values[f.name] = Path(value) if f.name.endswith("_dir") else value
        values.update(overrides)
        return cls(**values)

    @property
    def embedded_database(self) -> bool:
        return self.mongodb_uri is None

    @property
    def wechat_configured(self) -> bool:
        return bool(self.wechat_app_id)
