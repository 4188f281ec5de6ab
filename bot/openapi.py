"""The OpenAPI 3.1 document of the JSON API, assembled from each handler module's part.

A module converted to ``bot.endpoints`` has ``api`` (an ``Api``), whose pydantic models generate its
part; a module not yet converted keeps a hand-written ``OPENAPI = {"paths": …, "schemas": …}``, which
is brought to 3.1 on the way in (OpenAPI 3.0's ``nullable`` becomes a ``"null"`` type). The hand-written
dicts disappear as the modules are converted.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "stable machine-readable code", "example": "slot_full"},
                "message": {"type": "string", "description": "中文说明", "example": "该时段已约满"},
                "details": {"type": "object"},
            },
        }
    },
}


def error_response(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def json_body(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


BEARER = [{"bearerAuth": []}]


def to_openapi_31(node: Any) -> Any:
    """A 3.0 schema fragment as 3.1: ``nullable: true`` becomes a type list with ``"null"`` (or, beside a
    ``$ref`` or without a type, an ``anyOf`` with ``{"type": "null"}``); ``example`` in a schema stays
    (3.1 still allows it)."""
    if isinstance(node, list):
        return [to_openapi_31(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: to_openapi_31(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is not True:
        return converted
    kind = converted.get("type")
    if isinstance(kind, str) and "$ref" not in converted:
        converted["type"] = [kind, "null"]
        if "enum" in converted:
            converted["enum"] = [*converted["enum"], None]
        return converted
    if isinstance(kind, list):
        converted["type"] = [*kind, "null"] if "null" not in kind else kind
        return converted
    description = converted.pop("description", None)
    result: dict[str, Any] = {"anyOf": [converted, {"type": "null"}]}
    if description:
        result["description"] = description
    return result


def build_document(modules: list[ModuleType]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for module in modules:
        api = getattr(module, "api", None)
        spec = api.openapi() if api is not None else to_openapi_31(getattr(module, "OPENAPI", None))
        if not spec:
            continue
        for path, operations in spec.get("paths", {}).items():
            paths.setdefault(path, {}).update(operations)
        schemas.update(spec.get("schemas", {}))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "医保小助手 API",
            "version": "1.0.0",
            "description": "医保政策问答、延时服务与网约护士预约、结算进度通知的后端接口。"
            "错误统一为 {\"error\": {\"code\", \"message\"}}。",
        },
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
