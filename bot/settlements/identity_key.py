"""The secret key of the identity-number hash (``bot.settlements.id_numbers.identity_hash``).

- ``IDENTITY_HASH_KEY`` set: its UTF-8 bytes are the key (at least 32 characters). Every instance
  of a deployment must use the same value, and it must never change: a new key orphans every
  binding and settlement already stored. Production (``WECHAT_APP_ID`` set) never falls back to
  a generated key: without the setting, binding and the settlement webhook answer 503
  ``identity_key_missing`` (and /readyz shows why in its detail) while the rest of the service runs.
- unset in development: a random 256-bit key is created once in ``DATA_DIR/identity-hash.key``
  with permissions 0600 and reused afterwards (a warning is logged). It is per data directory, so
  instances sharing one database must not rely on it.

The key is kept outside the database on purpose: ID numbers have little entropy (region, birth
date, sequence), so a hash whose key sits next to the hashes could be reversed by enumeration.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.config import Settings

log = logging.getLogger(__name__)

KEY_FILE = "identity-hash.key"
MIN_LENGTH = 32


IDENTITY_KEY: web.AppKey[bytes | None] = web.AppKey("identity_key")


class IdentityKeyError(RuntimeError):
    pass


def resolve(settings: Settings) -> bytes:
    if settings.identity_hash_key:
        if len(settings.identity_hash_key) < MIN_LENGTH:
            raise IdentityKeyError(
                f"IDENTITY_HASH_KEY 至少需要 {MIN_LENGTH} 个字符 / IDENTITY_HASH_KEY must have at least "
                f"{MIN_LENGTH} characters"
            )
        return settings.identity_hash_key.encode()
    if settings.wechat_configured:
        raise IdentityKeyError(
            "生产环境（已设置 WECHAT_APP_ID）必须设置 IDENTITY_HASH_KEY / IDENTITY_HASH_KEY is required "
            "when WECHAT_APP_ID is set"
        )
    return _development_key(Path(settings.data_dir) / KEY_FILE)


def _development_key(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # write a private temporary file, then link it into place: atomic, and a concurrent
        # starter either wins the link or reads the complete winner
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        try:
            os.link(temporary, path)
            log.warning("IDENTITY_HASH_KEY is not set: created a development key file; production must set it",
                        extra={"path": str(path)})
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    key = path.read_text().strip()
    if len(key) < MIN_LENGTH:
        raise IdentityKeyError(f"{path} 内容无效 / {path} does not hold a valid key")
    return key.encode()


async def identity_key_context(app: Any) -> AsyncIterator[None]:
    """Cleanup context: resolve the key at start; without one, binding and the settlement webhook
    answer 503 and /readyz shows why (the rest of the service runs)."""
    from bot.keys import READINESS, SETTINGS

    try:
        app[IDENTITY_KEY] = resolve(app[SETTINGS])
    except IdentityKeyError as exc:
        app[IDENTITY_KEY] = None
        app[READINESS].detail["settlements"] = f"disabled: {exc}"
        log.error("settlement features disabled: no identity hash key", extra={"reason": str(exc)})
    yield


def require(app: Any) -> bytes:
    """The key, or the 503 a handler answers while it is missing."""
    from bot.errors import ApiError

    key = app.get(IDENTITY_KEY)
    if key is None:
        raise ApiError(503, "identity_key_missing",
                       "服务端未配置 IDENTITY_HASH_KEY，暂不能处理参保人证件号（绑定参保人与结算通知不可用）")
    return key
