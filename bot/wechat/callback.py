"""The official-account callback protocol without HTTP: credentials, signature and clock checks,
defensive XML parsing and AES safe mode. ``handlers/wechat.py`` serves it; the terminal simulator
(``python -m bot chat``) uses the same functions to play the WeChat side.

Development defaults: with no ``WECHAT_APP_ID`` configured (development, the embedded default)
and no ``WECHAT_TOKEN``, the callback accepts messages signed with ``DEV_TOKEN``
(``yibao-dev-token``); safe mode then uses ``DEV_AES_KEY`` and ``DEV_APP_ID`` unless
``WECHAT_ENCODING_AES_KEY`` is set. With an AppID configured nothing is defaulted: a missing
``WECHAT_TOKEN`` disables the callback (503) and a missing AES key refuses safe-mode requests.

XML is parsed once, with expat and handlers that refuse any DOCTYPE, entity or external reference
(defusedxml's protections, without its pure-Python tree); wechatpy's message object is built from
the parsed fields. wechatpy's own parser (xmltodict/expat without those protections) sees only
documents that passed this check and carry nested elements.
"""

from __future__ import annotations

import binascii
import re
import struct
import time
from dataclasses import dataclass
from typing import Any
from xml.parsers import expat

from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.events import EVENT_TYPES
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.messages import MESSAGE_TYPES, BaseMessage, UnknownMessage
from wechatpy.utils import WeChatSigner, check_signature

from bot.config import Settings

DEV_TOKEN = "yibao-dev-token"
DEV_APP_ID = "wxd0000000000000de"
DEV_AES_KEY = "yibaoDevEncodingAESKey0123456789abcdefghijk"
MAX_CLOCK_SKEW_SECONDS = 300
MAX_BODY_BYTES = 64 * 1024

_REQUIRED = ("ToUserName", "FromUserName", "CreateTime", "MsgType")
_SCALARS = (*_REQUIRED, "MsgId", "Event", "EventKey", "Content", "Recognition")
_DIGITS = re.compile(r"\d{1,20}")  # always fullmatch: "$" would accept a trailing newline
# openids are 28 characters of [A-Za-z0-9_-]; allow some room for other account kinds and test ids
_OPENID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


class CallbackRejectedError(Exception):
    """The request is refused with HTTP ``status``; ``reason`` is for logs, never shown to WeChat."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class CallbackCredentials:
    token: str | None  # None: the callback is not configured
    aes_key: str | None  # None: safe mode is not available
    app_id: str
    development: bool
    # plain (and unsigned-body) requests refused: set when an EncodingAESKey is configured and
    # WECHAT_SAFE_MODE_ONLY is on (the default); never for the development default key
    safe_mode_only: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> CallbackCredentials:
        development = not settings.wechat_configured
        token = settings.wechat_token or (DEV_TOKEN if development else None)
        aes_key = settings.wechat_encoding_aes_key or (DEV_AES_KEY if development else None)
        safe_only = bool(settings.wechat_encoding_aes_key) and settings.wechat_safe_mode_only
        return cls(token, aes_key, settings.wechat_app_id or DEV_APP_ID, development, safe_only)

    def crypto(self) -> WeChatCrypto:
        if not (self.token and self.aes_key):
            raise CallbackRejectedError(400, "safe mode requested but no EncodingAESKey configured")
        return WeChatCrypto(self.token, self.aes_key, self.app_id)


# --- checks ---------------------------------------------------------------------------------------

def check_timestamp(timestamp: str | None, now: float | None = None) -> None:
    if not timestamp or not _DIGITS.fullmatch(timestamp):
        raise CallbackRejectedError(403, "missing or malformed timestamp")
    if abs((now if now is not None else time.time()) - int(timestamp)) > MAX_CLOCK_SKEW_SECONDS:
        raise CallbackRejectedError(403, "timestamp outside the 5-minute window")


def verify_signature(token: str, signature: str | None, timestamp: str, nonce: str | None) -> None:
    if not signature or nonce is None:
        raise CallbackRejectedError(403, "missing signature or nonce")
    try:
        check_signature(token, signature, timestamp, nonce)
    except InvalidSignatureException:
        raise CallbackRejectedError(403, "bad signature") from None


def check_sender(fields: dict[str, Any], openid: str | None) -> None:
    """The message must come from the user the URL names: WeChat puts the sender's ``openid`` in the
    query of every message push. In plain mode the signature does not cover the body, so this
    (with the replay record of ``bot.wechat.dedupe``) is what ties a body to the signed request."""
    sender = fields["FromUserName"]
    if not openid or not _OPENID.fullmatch(openid):
        raise CallbackRejectedError(403, "missing or malformed openid")
    if sender != openid:
        raise CallbackRejectedError(403, "FromUserName differs from the URL's openid")


def decode_body(body: bytes) -> str:
    if not body.strip():
        raise CallbackRejectedError(400, "empty body")
    try:
        return body.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError:
        raise CallbackRejectedError(400, "body is not UTF-8") from None


class _RejectedDeclarationError(Exception):
    """Raised from expat handlers: the document declares something we never accept."""


def _reject(*_args: object) -> None:
    raise _RejectedDeclarationError


def parse_xml(text: str, required: tuple[str, ...] = _REQUIRED) -> dict[str, Any]:
    """The top-level fields of a WeChat ``<xml>`` document; rejects DTDs, entities, malformed or
    incomplete documents. Scalar fields are text; a nested one (the lists of some events) is a
    ``dict`` of its children's tags, and the message object comes from wechatpy then (``to_message``).

    One pass of expat with handlers that refuse any DOCTYPE, entity declaration or external
    reference before expat acts on it (what defusedxml does, without building a tree)."""
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _reject
    parser.EntityDeclHandler = _reject
    parser.UnparsedEntityDeclHandler = _reject
    parser.ExternalEntityRefHandler = _reject
    parser.buffer_text = True
    fields: dict[str, Any] = {}
    depth = 0
    root_ok = True
    current: str | None = None
    chunks: list[str] = []
    nested: dict[str, Any] | None = None

    def start(tag: str, _attributes: Any) -> None:
        nonlocal depth, root_ok, current, nested
        depth += 1
        if depth == 1:
            root_ok = tag == "xml"
        elif depth == 2:
            if tag in fields:
                raise CallbackRejectedError(400, f"repeated element {tag}")
            current, nested = tag, None
            chunks.clear()
        elif depth == 3 and current is not None:
            if nested is None:
                nested = {}
            nested[tag] = True

    def end(_tag: str) -> None:
        nonlocal depth, current
        if depth == 2 and current is not None:
            fields[current] = nested if nested is not None else "".join(chunks)
            current = None
        depth -= 1

    def data(chunk: str) -> None:
        if depth == 2:
            chunks.append(chunk)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data
    try:
        parser.Parse(text, True)
    except _RejectedDeclarationError:
        raise CallbackRejectedError(400, "DOCTYPE, entity or external reference in XML") from None
    except expat.ExpatError:
        raise CallbackRejectedError(400, "malformed XML") from None
    if not root_ok:
        raise CallbackRejectedError(400, "root element is not <xml>")
    for name in required:
        if not isinstance(fields.get(name), str) or not fields[name].strip():
            raise CallbackRejectedError(400, f"missing {name}")
    for name in _SCALARS:
        if name in fields and not isinstance(fields[name], str):
            raise CallbackRejectedError(400, f"{name} must be text")
    for name in ("CreateTime", "MsgId"):
        if name in fields and not _DIGITS.fullmatch(fields[name].strip()):
            raise CallbackRejectedError(400, f"{name} must be a number")
    return fields


def to_message(text: str, fields: dict[str, Any] | None = None) -> BaseMessage:
    """wechatpy's message object for XML that ``parse_xml`` accepted. With its ``fields`` and no
    nested element (every message but a few list-carrying events) the object is built from them,
    the way ``wechatpy.parse_message`` would, without parsing the XML a second time."""
    if fields is not None and not any(isinstance(value, dict) for value in fields.values()):
        return _message_from_fields(fields)
    try:
        return parse_message(_XML_DECLARATION.sub("", text))
    except Exception:  # wechatpy/xmltodict raise many kinds on odd input; all mean bad input
        raise CallbackRejectedError(400, "wechatpy could not parse the message") from None


def _message_from_fields(fields: dict[str, Any]) -> BaseMessage:
    # xmltodict (wechatpy's parser) strips text and gives None for an empty element
    values: dict[str, Any] = {name: (value.strip() or None) for name, value in fields.items()}
    message_type = values["MsgType"].lower()
    if message_type != "event" and not message_type.startswith("device_"):
        return MESSAGE_TYPES.get(message_type, UnknownMessage)(values)
    event = values["Event"].lower() if values.get("Event") else None
    if message_type.startswith("device_"):
        event = message_type if event is None else f"device_{event}"
    key = values.get("EventKey")
    if event == "subscribe" and key:
        if key.startswith(("scanbarcode|", "scanimage|")):
            event = values["Event"] = "subscribe_scan_product"
        elif key.startswith("qrscene_"):
            event = values["Event"] = "subscribe_scan"
            values["EventKey"] = key[len("qrscene_"):]
    return EVENT_TYPES.get(event, UnknownMessage)(values)


def decrypt(credentials: CallbackCredentials, envelope: dict[str, Any], msg_signature: str | None,
            timestamp: str, nonce: str | None) -> str:
    """The plaintext XML inside a safe-mode envelope, verified with ``msg_signature``."""
    if not msg_signature or nonce is None:
        raise CallbackRejectedError(403, "missing msg_signature or nonce")
    encrypted = envelope.get("Encrypt")
    if not isinstance(encrypted, str) or not encrypted.strip():
        raise CallbackRejectedError(400, "missing Encrypt")
    try:
        return credentials.crypto().decrypt_message({"Encrypt": encrypted}, msg_signature, timestamp, nonce)
    except InvalidSignatureException:
        raise CallbackRejectedError(403, "bad msg_signature") from None
    except CallbackRejectedError:
        raise
    except (ValueError, IndexError, TypeError, struct.error, binascii.Error, UnicodeDecodeError):
        raise CallbackRejectedError(400, "cannot decrypt") from None
    except Exception:  # InvalidAppIdException and friends: not meant for this account
        raise CallbackRejectedError(400, "decrypted message is for another AppID") from None


# --- the WeChat side (used by the simulator and tests) -------------------------------------------

def sign(token: str, timestamp: str, nonce: str, *extra: str) -> str:
    signer = WeChatSigner()
    signer.add_data(token, timestamp, nonce, *extra)
    return signer.signature


def encrypt(credentials: CallbackCredentials, xml: str, nonce: str, timestamp: str) -> str:
    return credentials.crypto().encrypt_message(xml, nonce, timestamp)
