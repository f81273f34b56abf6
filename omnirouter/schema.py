"""OpenAPI: the error answers every operation can give, documented once for all of them.

Views document their success bodies (and errors specific to them); the refusals that come from
the platform are the same everywhere, so they are added here rather than on each view:

- 400: a body or query that does not validate (field errors, or ``detail``/``field`` for input
  refused at the door by ``omnirouter.inputs``);
- 401 / 403: not authenticated / not allowed (roles, ``omnirouter.permissions``);
- 404: a path id, or a record a write's body names, that does not exist or is outside the
  caller's scope (existence is not disclosed);
- 409: a state that moved on (``omnirouter.errors.Conflict``), for writes;
- 429: a rate limit, with ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

_ERROR_SCHEMA = {
    "type": "object",
    "description": "A refusal: ``detail`` is for people, ``code`` is stable.",
    "properties": {
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "field": {"type": "string"},
    },
    "additionalProperties": True,
}
_VALIDATION_SCHEMA = {
    "description": "Field errors (field name -> messages), or a refusal with ``detail``.",
    "anyOf": [
        {"$ref": "#/components/schemas/Error"},
        {
            "type": "object",
            "additionalProperties": {
                "anyOf": [
                    {"type": "array", "items": {}},
                    {"type": "string"},
                    {"type": "object"},
                ]
            },
        },
    ],
}
_DESCRIPTIONS = {
    "400": "Invalid input.",
    "401": "Not authenticated.",
    "403": "Not allowed for this role.",
    "404": "Not found, or not in the caller's scope.",
    "409": "The state moved on; nothing was changed.",
    "429": "Rate limited; see Retry-After.",
}
_WRITES = {"post", "put", "patch", "delete"}


def _response(code: str) -> dict[str, Any]:
    schema = _VALIDATION_SCHEMA if code == "400" else {"$ref": "#/components/schemas/Error"}
    response: dict[str, Any] = {
        "description": _DESCRIPTIONS[code],
        "content": {"application/json": {"schema": schema}},
    }
    if code == "429":
        response["headers"] = {
            "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}
        }
    return response


def add_error_responses(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook (``SPECTACULAR_SETTINGS``)."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = _ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in {"get", "head", "options", *_WRITES}:
                continue
            codes = ["400", "429"]
            if operation.get("security") != [{}] and {} not in (operation.get("security") or []):
                codes += ["401", "403"]
            if "{" in path or method in _WRITES:
                codes.append("404")
            if method in _WRITES:
                codes.append("409")
            responses = operation.setdefault("responses", {})
            for code in codes:
                responses.setdefault(code, _response(code))
    return result
