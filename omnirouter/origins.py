"""Which pages may open our WebSockets: origins compared on scheme, host and port.

A socket's page origin is allowed when it is the server's own origin (the socket's Host header,
if ALLOWED_HOSTS accepts it, with the scheme the browser used: ``wss`` or a trusted proxy header
means https) or one of the listed origins: DJANGO_CSRF_TRUSTED_ORIGINS for staff sockets, the
channel account's allowed origins for the web chat. ``https://*.example.com`` in a list allows
that scheme and port on any subdomain. Default ports are implied (``https://a`` is
``https://a:443``); anything else must match exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

_DEFAULT_PORTS = {"http": 80, "https": 443}


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int

    def matches(self, pattern: Origin) -> bool:
        if (self.scheme, self.port) != (pattern.scheme, pattern.port):
            return False
        if pattern.host.startswith("*."):
            return self.host.endswith(pattern.host[1:])
        return self.host == pattern.host


def parse_origin(value: str) -> Origin | None:
    """``scheme://host[:port]`` as an Origin, or None if it is not a web origin."""
    value = value.strip().rstrip("/")
    wildcard = "://*." in value
    parts = urlsplit(value.replace("://*.", "://wildcard.", 1) if wildcard else value)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path or parts.query:
        return None
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    host = parts.hostname
    if wildcard:
        host = "*" + host.removeprefix("wildcard")
    return Origin(scheme, host, port)


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key == name:
            return value.decode("latin-1")
    return ""


def _scheme(scope: dict[str, Any]) -> str:
    if scope.get("scheme") == "wss":
        return "https"
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy:
        name = proxy[0].removeprefix("HTTP_").replace("_", "-").lower().encode()
        if _header(scope, name).split(",")[0].strip() == proxy[1]:
            return "https"
    return "http"


def own_origin(scope: dict[str, Any]) -> Origin | None:
    """This server's origin as the browser sees it, if the Host header is one of ours."""
    host = _header(scope, b"host")
    domain, _port = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    if not domain or not validate_host(domain, allowed):
        return None
    return parse_origin(f"{_scheme(scope)}://{host}")


def origin_allowed(scope: dict[str, Any], allowed: Iterable[str]) -> bool:
    """The socket's Origin header is the server's own origin or one of ``allowed``."""
    origin = parse_origin(_header(scope, b"origin"))
    if origin is None or origin.host.startswith("*"):
        return False
    patterns = [p for p in (parse_origin(value) for value in allowed) if p is not None]
    own = own_origin(scope)
    if own is not None:
        patterns.append(own)
    return any(origin.matches(pattern) for pattern in patterns)


class StaffOriginValidator:
    """ASGI middleware for staff sockets: refuses the handshake (HTTP 403) unless the page is
    this server or a DJANGO_CSRF_TRUSTED_ORIGINS origin."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if origin_allowed(scope, settings.CSRF_TRUSTED_ORIGINS):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
