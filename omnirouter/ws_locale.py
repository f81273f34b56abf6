"""The language of a WebSocket connection, chosen as Django's LocaleMiddleware chooses it for a
page: the language cookie (set by the switcher), then the browser's Accept-Language."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import translation
from django.utils.translation.trans_real import parse_accept_lang_header


def language_of(scope: dict[str, Any]) -> str:
    supported = {code for code, _name in settings.LANGUAGES}
    cookie = scope.get("cookies", {}).get(settings.LANGUAGE_COOKIE_NAME)
    candidates = [cookie] if cookie else []
    for name, value in scope.get("headers", []):
        if name == b"accept-language":
            candidates += [lang for lang, _q in parse_accept_lang_header(value.decode("latin-1"))]
    for candidate in candidates:
        try:
            code = translation.get_supported_language_variant(candidate)
        except LookupError:
            continue
        if code in supported:
            return code
    return settings.LANGUAGE_CODE
