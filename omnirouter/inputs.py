"""Input that cannot be stored or walked safely is refused at the door, naming the field.

PostgreSQL refuses a NUL byte in text and in ``jsonb``; Python's JSON parser and every recursive
walk over a value fail on nesting thousands deep. Both used to reach the database or the
serializers and answer 500 (or close a socket with 1011). Every JSON body of the API
(``SafeJSONParser``), every form body of the API (``SafeFormParser``) and every WebSocket frame
(``check_value`` from the consumers) goes through ``check_value`` first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _
from rest_framework.exceptions import ParseError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser


class UnsafeInput(ValueError):
    """``message`` is for people; ``field`` names where the bad value is (``entry.0.text``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _path(parts: tuple[str, ...]) -> str:
    return ".".join(parts) or "(body)"


def check_value(value: Any, *, max_depth: int | None = None) -> None:
    """Raise ``UnsafeInput`` for a NUL byte in any string (keys included) or nesting deeper than
    ``max_depth`` (``INPUT_MAX_JSON_DEPTH``). Iterative, so the check itself cannot recurse."""
    limit = max_depth if max_depth is not None else settings.INPUT_MAX_JSON_DEPTH
    stack: list[tuple[Any, tuple[str, ...], int]] = [(value, (), 0)]
    while stack:
        current, path, depth = stack.pop()
        if isinstance(current, str):
            if "\x00" in current:
                raise UnsafeInput(_("A text value contains a NUL byte."), _path(path))
        elif isinstance(current, Mapping | list | tuple):
            if depth >= limit:
                raise UnsafeInput(
                    _("Nested deeper than %(limit)d levels.") % {"limit": limit}, _path(path)
                )
            if isinstance(current, Mapping):
                for key, item in current.items():
                    key_text = str(key)
                    if "\x00" in key_text:
                        raise UnsafeInput(_("A field name contains a NUL byte."), _path(path))
                    stack.append((item, (*path, key_text), depth + 1))
            else:
                for index, item in enumerate(current):
                    stack.append((item, (*path, str(index)), depth + 1))


def loads(text: str | bytes) -> Any:
    """``json.loads`` that refuses what ``check_value`` refuses, with ``UnsafeInput`` (a body too
    deep for the parser itself included) and ``ValueError`` for JSON that does not parse."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise UnsafeInput(
            _("Nested deeper than %(limit)d levels.") % {"limit": settings.INPUT_MAX_JSON_DEPTH},
            "(body)",
        ) from None
    check_value(value)
    return value


def _refuse(exc: UnsafeInput) -> ParseError:
    return ParseError({"detail": f"{exc.field}: {exc.message}", "field": exc.field})


class SafeJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            value = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise _refuse(
                UnsafeInput(
                    _("Nested deeper than %(limit)d levels.")
                    % {"limit": settings.INPUT_MAX_JSON_DEPTH},
                    "(body)",
                )
            ) from None
        try:
            check_value(value)
        except UnsafeInput as exc:
            raise _refuse(exc) from None
        return value


def _check_form(data: Any) -> None:
    for key in data:
        for item in data.getlist(key):
            if isinstance(item, str) and "\x00" in item:
                raise _refuse(UnsafeInput(_("A text value contains a NUL byte."), key))


class SafeFormParser(FormParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        _check_form(data)
        return data


class SafeMultiPartParser(MultiPartParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        result = super().parse(stream, media_type, parser_context)
        _check_form(result.data)
        return result
