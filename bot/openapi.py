"""The OpenAPI 3 document of the JSON API, assembled from each handler module's ``OPENAPI``.

Each module under ``handlers/`` that serves JSON keeps an ``OPENAPI = {"paths": …, "schemas": …}``
next to its routes, so the document stays complete as endpoints are added.
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


def build_document(modules: list[ModuleType]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for module in modules:
        api = getattr(module, "api", None)
        spec = api.openapi() if api is not None else getattr(module, "OPENAPI", None)
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
