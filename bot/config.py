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

APP_ENVS = ("production", "development")
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


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


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a positive number")
    return value


def _app_env(raw: str) -> str:
    value = raw.strip().lower()
    if value not in APP_ENVS:
        raise ValueError("must be production or development")
    return value


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
    "positive_float": (_positive_float, "必须是正数"),
    "app_env": (_app_env, "应为 production 或 development"),
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
    face_verify_max_age_minutes: int = _setting("positive_int", 10)  # older face-verification results are refused
    bind_attempts_per_account: int = _setting("positive_int", 10)  # identity bind/verify attempts per account, window
    bind_attempts_per_identity: int = _setting("positive_int", 5)  # … per insured identity (ID number) and window
    bind_attempt_window_minutes: int = _setting("positive_int", 60)  # the window of those two limits
    max_grantees_per_identity: int = _setting("positive_int", 5)  # family accounts one insured identity may grant
    outbox_concurrency: int = _setting("positive_int", 64)  # notifications sent at once per instance
    outbox_lease_seconds: int = _setting("positive_int", 60)  # a claimed notification is reclaimed after this
    outbox_max_attempts: int = _setting("positive_int", 8)  # transient failures before a notification fails
    outbox_retry_base_seconds: int = _setting("positive_int", 10)  # first retry delay (doubles, with jitter)
    # --- hardening (issue 18): mode, body deadline, FAQ gap flood cap ---
    app_env: str = _setting("app_env", "production")  # development only when chosen explicitly
    development_allow_remote: bool = _setting("bool", False)  # development mode may listen beyond loopback
    body_read_timeout_seconds: float = _setting("positive_float", 10.0)  # a body not received by then: 408
    faq_gaps_per_address_per_day: int = _setting("positive_int", 20)  # gap questions one address may add a day
    trust_x_forwarded_for: bool = _setting("bool", False)  # behind a reverse proxy: client address from it
    # issue 16, home visits: arrival radius, retention of location pings, alarm escalation
    visit_arrival_radius_m: int = _setting("positive_int", 300)
    visit_ping_retention_days: int = _setting("positive_int", 30)
    alarm_escalation_minutes: int = _setting("positive_int", 3)

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
    def development(self) -> bool:
        return self.app_env == "development"

    @property
    def wechat_configured(self) -> bool:
        """False only in development mode without an AppID: the development conveniences (dev-login, the
        public development callback token and key, a generated identity key) exist only then. Production
        never infers them from a missing AppID; it refuses to start without one (``check_startable``)."""
        return bool(self.wechat_app_id) or not self.development

    def check_startable(self) -> None:
        """Refuse to serve in a configuration that would be unsafe: production without its secrets
        (each missing variable named), development listening beyond loopback unless told so."""
        if self.development:
            if self.host not in LOOPBACK_HOSTS and not self.development_allow_remote:
                raise SettingsError(
                    "HOST", f"开发模式（APP_ENV=development）只监听本机地址，{self.host} 需同时设置 "
                    "DEVELOPMENT_ALLOW_REMOTE=true", f"development mode listens on loopback only; {self.host} "
                    "also needs DEVELOPMENT_ALLOW_REMOTE=true")
            return
        missing = [name.upper() for name in PRODUCTION_REQUIRED if not getattr(self, name)]
        if missing:
            names = ", ".join(missing)
            raise SettingsError(names, f"生产模式必须设置 {names}（开发环境请设置 APP_ENV=development）",
                                f"required in production mode: {names} (set APP_ENV=development for development)")
        if len(self.identity_hash_key or "") < 32:
            raise SettingsError("IDENTITY_HASH_KEY", "至少需要 32 个字符", "must have at least 32 characters")


# Production (APP_ENV=production, the default) refuses to start without these.
PRODUCTION_REQUIRED = ("wechat_app_id", "wechat_app_secret", "wechat_token", "identity_hash_key",
                       "settlement_webhook_secret")
