"""One declaration per endpoint: the pydantic models of its body, query and response validate the
request and generate its part of the OpenAPI document, so the two cannot drift apart.

A handler module declares ``api = Api("tag")`` and decorates its handlers::

    @api.post("/api/v1/patients", summary="添加就诊人", body=PatientIn, response=Patient, status=201,
              auth=True, errors={409: "就诊人数量已达上限"})
    async def create_patient(request: web.Request, body: PatientIn) -> web.Response: ...

The handler receives the validated ``body`` and/or ``query`` as keyword arguments. Bodies are
parsed by pydantic's own JSON parser in strict mode (no ``true`` for a number, no string for an
integer; deep nesting and lone surrogates are a 400 ``invalid_json``); queries in lax mode, since
every query value arrives as text. Written by hand because the aiohttp integrations on PyPI
(aiohttp-pydantic, aiohttp-apispec) either pin pydantic 1 / marshmallow or want class-based views.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import pydantic_core
from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from bot.errors import ApiError, bad_request
from bot.web import _storable as storable
from bot.web import json_response

BEARER = [{"bearerAuth": []}]
_PATH_PARAMETER = re.compile(r"{(\w+)}")

# Chinese wording of pydantic's error types; the rest fall back to "取值无效".
_MESSAGES = {
    "missing": "缺少必填字段",
    "string_too_short": "长度不足",
    "string_too_long": "长度超出限制",
    "string_pattern_mismatch": "格式不正确",
    "string_type": "应为字符串",
    "int_type": "应为整数",
    "int_parsing": "应为整数",
    "int_from_float": "应为整数",
    "float_type": "应为数字",
    "float_parsing": "应为数字",
    "bool_type": "应为 true 或 false",
    "bool_parsing": "应为 true 或 false",
    "greater_than": "数值过小",
    "greater_than_equal": "数值过小",
    "less_than": "数值过大",
    "less_than_equal": "数值过大",
    "literal_error": "不是允许的取值",
    "enum": "不是允许的取值",
    "list_type": "应为数组",
    "too_short": "项数不足",
    "too_long": "项数超出限制",
    "dict_type": "应为 JSON 对象",
    "model_type": "应为 JSON 对象",
    "model_attributes_type": "应为 JSON 对象",
    "date_type": "应为日期（YYYY-MM-DD）",
    "date_parsing": "应为日期（YYYY-MM-DD）",
    "date_from_datetime_parsing": "应为日期（YYYY-MM-DD）",
    "datetime_type": "应为带时区的时间（ISO 8601）",
    "datetime_parsing": "应为带时区的时间（ISO 8601）",
    "timezone_aware": "时间须带时区",
    "value_error": "取值无效",
}


def _ascii_integer(value: Any) -> Any:
    """Query integers are ASCII digits only: ``int("²")`` and ``int("①")`` must not pass as numbers."""
    if isinstance(value, str) and not re.fullmatch(r"[+-]?[0-9]{1,18}", value.strip()):
        raise ValueError("应为整数")
    return value


QueryInt = Annotated[int, BeforeValidator(_ascii_integer)]
M = TypeVar("M", bound=BaseModel)


class Body(BaseModel):
    """Base of request bodies: unknown fields are refused, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Query(BaseModel):
    """Base of query models: unknown parameters are ignored (caches and trackers add their own)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


def _label(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> str:
    """A field's Chinese title (``Field(title=…)``) where the model gives one, else its dotted name."""
    names, current = [], model
    for part in loc:
        info = current.model_fields.get(part) if current is not None and isinstance(part, str) else None
        names.append(info.title if info is not None and info.title else str(part))
        annotation = info.annotation if info is not None else None
        current = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return "·".join(names)


DOMAIN_RULE = "domain_rule"


def domain_rule(message: str) -> pydantic_core.PydanticCustomError:
    """Raise it from a validator for a rule the schema cannot express (a date relative to today): the
    request is a 422, since the document's schema accepts it."""
    return pydantic_core.PydanticCustomError(DOMAIN_RULE, message)


def validation_error(exc: ValidationError, model: type[BaseModel] | None = None, *, where: str = "body",
                     code: str | None = None) -> ApiError:
    """Every problem of ``exc`` in one Chinese sentence, each field named, as a 400."""
    problems = exc.errors(include_url=False, include_context=False, include_input=False)
    first = problems[0]
    if first["type"] == "json_invalid":
        return bad_request("invalid_json", "请求内容不是有效的 JSON")
    if first["type"] in ("model_type", "model_attributes_type", "dict_type") and not first["loc"]:
        return bad_request("invalid_json", "请求内容必须是 JSON 对象")
    unknown = [".".join(map(str, p["loc"])) for p in problems if p["type"] == "extra_forbidden"]
    if unknown:
        return bad_request("unknown_fields", f"不支持的字段：{'、'.join(unknown)}", fields=unknown)
    parts = []
    for problem in problems:
        message = _MESSAGES.get(problem["type"], "取值无效")
        if problem["type"] == DOMAIN_RULE:
            message = str(problem.get("msg", "")) or message
        if problem["type"] == "value_error":
            message = str(problem.get("msg", "")).removeprefix("Value error, ") or message
        parts.append(f"「{_label(model, tuple(problem['loc'])) or where}」{message}")
    fields = [".".join(map(str, p["loc"])) for p in problems]
    if all(p["type"] == DOMAIN_RULE for p in problems):
        # schema-valid, but a rule JSON Schema cannot state (tests/schemathesis.toml): 422, never 400
        return ApiError(422, code or ("invalid_parameter" if where == "query" else "invalid_field"),
                        "；".join(dict.fromkeys(parts)), field=fields[0], fields=fields)
    return bad_request(code or ("invalid_parameter" if where == "query" else "invalid_field"),
                       "；".join(dict.fromkeys(parts)), field=fields[0], fields=fields)


_LONG_NUMBER = re.compile(r"[0-9]{19}|[eE][+-]?[0-9]{3}")


def _as_integer(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _as_integer(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_integer(v) for v in value]
    return value


def _integral_floats_as_integers(text: str) -> str | bytes:
    """JSON Schema counts ``45.0`` as an integer and the document says ``integer``, so strict
    validation must accept it: integral numbers written with a fraction or an exponent become integers
    (float fields accept integers in strict mode too). Text that cannot be parsed is returned as it
    is, for pydantic to report."""
    if "." not in text and "e" not in text and "E" not in text:
        return text
    try:
        return pydantic_core.to_json(_as_integer(pydantic_core.from_json(text)))
    except ValueError:
        return text


async def parse_body(request: web.Request, model: type[M], code: str | None = None) -> M:
    raw = await request.read()
    if not raw:
        raise bad_request("body_required", "请求内容不能为空（需要 JSON 对象）")
    try:
        text = raw.decode("utf-8")  # the same code as bot.web.read_json for a body that is not UTF-8
    except UnicodeDecodeError:
        raise bad_request("invalid_encoding", "请求内容必须是 UTF-8 编码") from None
    if _LONG_NUMBER.search(text):
        # as bot.web.read_json: a number MongoDB cannot store is refused before any field is looked at
        try:
            storable_numbers = storable(pydantic_core.from_json(text, allow_inf_nan=False))
        except ValueError:
            storable_numbers = True  # not JSON: pydantic reports it below
        if not storable_numbers:
            raise bad_request("invalid_json", "请求内容中的数值超出范围")
    try:
        return model.model_validate_json(_integral_floats_as_integers(text), strict=True)
    except ValidationError as exc:
        raise validation_error(exc, model, code=code) from None


def _has_bearer(request: web.Request) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def parse_query(request: web.Request, model: type[M], code: str | None = None) -> M:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise validation_error(exc, model, where="query", code=code) from None


Handler = Callable[..., Awaitable[Any]]


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    tags: list[str]
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: dict[int, str] = field(default_factory=dict)
    auth: bool = False
    description: str | None = None
    body_required: bool = True
    invalid_code: str | None = None  # the 400's code for a body or query that fails validation
    error_models: dict[int, type[BaseModel]] = field(default_factory=dict)  # an error body that is not Error

    def document(self, schemas: dict[str, Any]) -> dict[str, Any]:
        operation: dict[str, Any] = {"summary": self.summary, "tags": self.tags}
        if self.description:
            operation["description"] = self.description
        if self.auth:
            operation["security"] = BEARER
        parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                      for name in _PATH_PARAMETER.findall(self.path)]
        if self.query:
            parameters += _query_parameters(self.query, schemas)
        if parameters:
            operation["parameters"] = parameters
        if self.body:
            operation["requestBody"] = {"required": self.body_required,
                                        "content": {"application/json": {"schema": schema_ref(self.body, schemas)}}}
        success: dict[str, Any] = {"description": "成功"}
        if self.response:
            success["content"] = {"application/json": {"schema": schema_ref(self.response, schemas, "serialization")}}
        responses: dict[str, Any] = {str(self.status): success}
        errors = dict(self.errors)
        if self.body or self.query:
            errors.setdefault(400, "请求内容或参数有误")
        if self.auth:
            errors.setdefault(401, "未登录或登录已失效")
        for status, description in sorted(errors.items()):
            model = self.error_models.get(status)
            schema = schema_ref(model, schemas, "serialization") if model else {"$ref": "#/components/schemas/Error"}
            responses[str(status)] = {"description": description, "content": {"application/json": {"schema": schema}}}
        operation["responses"] = responses
        return operation


def schema_ref(model: type[BaseModel], schemas: dict[str, Any], mode: str = "validation") -> dict[str, str]:
    """Add ``model`` (and the models it uses) to ``schemas``; returns the reference to it."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)  # type: ignore[arg-type]
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _query_parameters(model: type[BaseModel], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        description = prop.pop("description", None)
        prop.pop("title", None)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


class Api:
    """A handler module's routes and the operations declared on them."""

    def __init__(self, *tags: str) -> None:
        self.tags = list(tags)
        self.routes = web.RouteTableDef()
        self.operations: list[Operation] = []
        self.models: list[type[BaseModel]] = []  # documented although no operation here names them

    def schema(self, model: type[BaseModel]) -> type[BaseModel]:
        """Document ``model`` (a class decorator) for other modules' operations to refer to."""
        self.models.append(model)
        return model

    def route(self, method: str, path: str, **declaration: Any) -> Callable[[Handler], Handler]:
        operation = Operation(method=method, path=path, tags=declaration.pop("tags", self.tags), **declaration)
        self.operations.append(operation)

        def decorate(handler: Handler) -> Handler:
            @functools.wraps(handler)
            async def endpoint(request: web.Request) -> web.StreamResponse:
                arguments: dict[str, Any] = {}
                if operation.auth and not _has_bearer(request):
                    # who is asking comes before what is asked: no token is a 401, whatever the body or query
                    raise ApiError(401, "unauthorized", "请先登录")
                if operation.body is not None:
                    if operation.body_required or request.can_read_body:
                        arguments["body"] = await parse_body(request, operation.body, operation.invalid_code)
                    else:
                        arguments["body"] = operation.body()
                if operation.query is not None:
                    arguments["query"] = parse_query(request, operation.query, operation.invalid_code)
                result = await handler(request, **arguments)
                if isinstance(result, web.StreamResponse):
                    return result
                if isinstance(result, BaseModel):
                    result = result.model_dump(mode="json")
                return json_response(result, status=operation.status)

            self.routes.route(method, path)(endpoint)
            return handler

        return decorate

    def get(self, path: str, **declaration: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **declaration)

    def post(self, path: str, **declaration: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **declaration)

    def put(self, path: str, **declaration: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **declaration)

    def patch(self, path: str, **declaration: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **declaration)

    def delete(self, path: str, **declaration: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **declaration)

    def openapi(self) -> dict[str, Any]:
        """This module's part of the document: ``{"paths": …, "schemas": …}``."""
        paths: dict[str, Any] = {}
        schemas: dict[str, Any] = {}
        for model in self.models:
            schema_ref(model, schemas, "serialization")
        for operation in self.operations:
            paths.setdefault(operation.path, {})[operation.method.lower()] = operation.document(schemas)
        return {"paths": paths, "schemas": schemas}
