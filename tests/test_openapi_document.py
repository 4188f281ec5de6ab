"""Issue 18: the served document is valid OpenAPI 3.1, generated from the same models that validate."""

from __future__ import annotations

import json

from openapi_spec_validator import OpenAPIV31SpecValidator

from bot.openapi import to_openapi_31


async def test_the_served_document_is_valid_openapi_31(client):
    response = await client.get("/api/v1/openapi.json")
    document = await response.json()
    assert document["openapi"] == "3.1.0"
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in OpenAPIV31SpecValidator(document).iter_errors()]
    assert not errors
    assert '"nullable"' not in json.dumps(document)  # OpenAPI 3.0 only
    login = document["paths"]["/api/v1/auth/wx-login"]["post"]
    assert {"400", "401", "502", "503"} <= set(login["responses"])
    assert document["components"]["schemas"]["WxLogin"]["properties"]["code"]["maxLength"] == 128


def test_nullable_becomes_a_null_type():
    assert to_openapi_31({"type": "string", "nullable": True}) == {"type": ["string", "null"]}
    assert to_openapi_31({"$ref": "#/x", "nullable": True, "description": "d"}) == {
        "anyOf": [{"$ref": "#/x"}, {"type": "null"}], "description": "d"}
    assert to_openapi_31({"type": "string", "enum": ["a"], "nullable": True}) == {
        "type": ["string", "null"], "enum": ["a", None]}
    assert to_openapi_31({"properties": {"a": {"type": "integer", "nullable": False}}}) == {
        "properties": {"a": {"type": "integer"}}}
