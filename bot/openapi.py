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


def _admits_null(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    return any(isinstance(branch, dict) and _admits_null(branch)
               for branch in [*schema.get("anyOf", []), *schema.get("oneOf", [])])


def without_unsendable_defaults(node: Any) -> Any:
    """pydantic writes ``"default": null`` for a field that may be left out but not sent as null
    (``name: str = Field(None)``: absent means "unchanged"). A default the schema itself refuses is
    invalid OpenAPI 3.1 and tells clients to send null, so it is dropped: leaving the field out says it."""
    if isinstance(node, list):
        return [without_unsendable_defaults(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: without_unsendable_defaults(value) for key, value in node.items()}
    if "default" in converted and converted["default"] is None and "$ref" not in converted \
            and not _admits_null(converted):
        del converted["default"]
    if "default" in converted and converted["default"] is None and "$ref" in converted:
        del converted["default"]
    return converted


def _renamed_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_renamed_refs(item, renames) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _renamed_refs(value, renames) for key, value in node.items()}
    ref = converted.get("$ref")
    if isinstance(ref, str) and ref.startswith(_SCHEMA_PREFIX) and ref[len(_SCHEMA_PREFIX):] in renames:
        converted["$ref"] = _SCHEMA_PREFIX + renames[ref[len(_SCHEMA_PREFIX):]]
    return converted


_SCHEMA_PREFIX = "#/components/schemas/"


def _without_collisions(spec: dict[str, Any], schemas: dict[str, Any], module: ModuleType) -> dict[str, Any]:
    """Two modules may each name a model ``ResolveIn``: the later one's schemas that differ from one
    already in the document are renamed after the module (``VisitsResolveIn``) and its references
    follow, so one module's operation is never described by another's model."""
    prefix = "".join(part.title() for part in module.__name__.rsplit(".", 1)[-1].split("_"))
    renames = {name: f"{prefix}{name}" for name, schema in spec.get("schemas", {}).items()
               if name in schemas and schemas[name] != schema}
    return _renamed_refs(spec, renames) | {"schemas": {renames.get(name, name): schema for name, schema in
                                                       _renamed_refs(spec.get("schemas", {}), renames).items()}} \
        if renames else spec


def build_document(modules: list[ModuleType]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for module in modules:
        api = getattr(module, "api", None)
        spec = api.openapi() if api is not None else to_openapi_31(getattr(module, "OPENAPI", None))
        if not spec:
            continue
        spec = _without_collisions(without_unsendable_defaults(spec), schemas, module)
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
