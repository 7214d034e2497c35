"""The OpenAPI 3.1 description of the HTTP API, generated from the same typed operations.

Rules this module keeps:

* Nothing here is written by hand per route: path and query parameters, request bodies and
  their descriptions come from each route's view of a memory operation (its pydantic schema,
  ``View.schema``), so the description always matches what the server validates.
* GET operations take their arguments as query parameters; POST and PUT take a JSON body.
  Path parameters (``{label}``, ``{message_id}``) are always path parameters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from agents.tools import builtin as T

__all__ = ["openapi_document"]


_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            "required": ["type", "message"],
        }
    },
    "required": ["error"],
}


def _responses(status: int, auth: bool) -> dict[str, Any]:
    err = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    out: dict[str, Any] = {
        str(status): {"description": "success", "content": {"application/json": {"schema": {"type": "object"}}}},
        "400": {"description": "invalid arguments", **err},
        "404": {"description": "unknown id or label", **err},
        "413": {"description": "request body too large", **err},
        "500": {"description": "server error", **err},
    }
    if auth:
        out["401"] = {"description": "no bearer token", **err}
        out["403"] = {"description": "wrong bearer token", **err}
    return out


def _operation(op: Any, auth: bool) -> dict[str, Any]:
    schema = op.view.schema()
    body = schema["input_schema"]
    path_names = set(re.findall(r"{(\w+)}", op.path))
    params: list[dict[str, Any]] = []
    props = dict(body.get("properties", {}))
    required = [r for r in body.get("required", []) if r not in path_names]
    for name in sorted(path_names):
        prop = props.pop(name)
        params.append({"name": name, "in": "path", "required": True, "schema": prop,
                       "description": prop.get("description", "")})
    out: dict[str, Any] = {
        "operationId": op.operation_id or op.view.name,
        "summary": op.summary,
        "description": schema["description"],
        "tags": [op.tag],
        "responses": _responses(op.status, auth),
    }
    if op.method == "GET":
        for name, prop in props.items():
            params.append({"name": name, "in": "query", "required": name in required, "schema": prop,
                           "description": prop.get("description", "")})
    elif props:
        content_schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
        if required:
            content_schema["required"] = required
        out["requestBody"] = {"required": bool(required), "content": {"application/json": {"schema": content_schema}}}
    params.append({"name": "X-Agent-Id", "in": "header", "required": False, "schema": {"type": "string"},
                   "description": "The agent whose blocks and messages to use (default: the server's agent)."})
    out["parameters"] = params
    return out


def _tool_paths(auth: bool) -> dict[str, Any]:
    names = list(T.TOOLS)
    return {
        "/tools": {"get": {"operationId": "list_tools", "summary": "Tool definitions (Anthropic tool format).",
                           "tags": ["tools"], "responses": _responses(200, auth)}},
        "/tools/{name}": {
            "post": {
                "operationId": "call_tool",
                "summary": "Run one memory tool with JSON arguments.",
                "description": "Each tool's arguments are those of its input_schema in GET /tools.",
                "tags": ["tools"],
                "parameters": [{"name": "name", "in": "path", "required": True,
                                "schema": {"type": "string", "enum": names}}],
                "requestBody": {"required": False, "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"arguments": {"type": "object"}}}}}},
                "responses": _responses(200, auth),
            }
        },
    }


def openapi_document(operations: Iterable[Any], *, auth: bool) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document for these operations (``agents.server.http.Operation``)."""
    paths: dict[str, Any] = {
        "/health": {"get": {"operationId": "health", "summary": "Liveness check (no token needed).",
                            "tags": ["service"], "security": [],
                            "responses": {"200": {"description": "the server is up"}}}},
    }
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, auth)
    paths |= _tool_paths(auth)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "rlm-memory", "version": "1",
                 "description": "Working memory blocks, the recall log and archival memory of one store."},
        "paths": paths,
        "components": {"schemas": {"Error": _ERROR}},
    }
    if auth:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc
