"""Socket origins are compared on scheme, host and port: staff sockets accept this server's own
pages and DJANGO_CSRF_TRUSTED_ORIGINS, the web chat its account's allowed origins."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.test import Client

from messaging.models import AccountKind, ChannelAccount
from omnirouter.asgi import application
from omnirouter.origins import parse_origin
from tests.factories import QueueFactory, ServiceChannelFactory, make_agent

pytestmark = pytest.mark.django_db(transaction=True)

STAFF_HOST = "support.example.com:8443"


@pytest.fixture(autouse=True)
def _hosts(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.ALLOWED_HOSTS = ["support.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://admin.example.com"]


def _connect(path: str, headers: list[tuple[bytes, bytes]], scheme: str = "wss"):
    from channels.testing import WebsocketCommunicator

    async def attempt():
        socket = WebsocketCommunicator(application, path, headers=headers)
        socket.scope["scheme"] = scheme
        connected, code = await socket.connect(timeout=5)
        if connected:
            first = await socket.receive_output(timeout=5)
            await socket.disconnect()
            return first
        return {"type": "refused", "code": code}

    return async_to_sync(attempt)()


def _staff(origin: str, scheme: str = "wss") -> str:
    agent = make_agent("alice")
    client = Client()
    client.force_login(agent.user)
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    headers = [
        (b"host", STAFF_HOST.encode()),
        (b"origin", origin.encode()),
        (b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={cookie}".encode()),
    ]
    frame = _connect("/ws/agent/", headers, scheme)
    return "refused" if frame["type"] == "refused" else "accepted"


@pytest.mark.parametrize(
    ("origin", "scheme", "outcome"),
    [
        ("https://support.example.com:8443", "wss", "accepted"),  # the server's own page
        ("https://admin.example.com", "wss", "accepted"),  # a trusted origin
        ("https://admin.example.com:443", "wss", "accepted"),  # the same, default port spelled
        ("https://support.example.com:9443", "wss", "refused"),  # wrong port
        ("https://support.example.com", "wss", "refused"),  # wrong port (443)
        ("http://support.example.com:8443", "wss", "refused"),  # wrong scheme
        ("https://support.example.com:8443", "ws", "refused"),  # page https, socket plain
        ("http://admin.example.com", "wss", "refused"),  # trusted host, wrong scheme
        ("https://evil.example.net", "wss", "refused"),  # other host
        ("https://admin.example.com.evil.net", "wss", "refused"),  # look-alike host
        ("null", "wss", "refused"),
    ],
)
def test_staff_sockets_check_scheme_host_and_port(origin, scheme, outcome):
    assert _staff(origin, scheme) == outcome


def test_a_host_outside_allowed_hosts_is_not_its_own_origin():
    # given a request whose Host header names someone else's server (DNS rebinding)
    agent = make_agent("alice")
    client = Client()
    client.force_login(agent.user)
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    headers = [
        (b"host", b"rebound.example.org"),
        (b"origin", b"https://rebound.example.org"),
        (b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={cookie}".encode()),
    ]
    assert _connect("/ws/agent/", headers)["type"] == "refused"


def test_behind_a_tls_proxy_the_forwarded_scheme_counts_only_when_configured(settings):
    agent = make_agent("alice")
    client = Client()
    client.force_login(agent.user)
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    headers = [
        (b"host", b"support.example.com"),
        (b"origin", b"https://support.example.com"),
        (b"x-forwarded-proto", b"https"),
        (b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={cookie}".encode()),
    ]
    # the proxy speaks plain ws to us; without the setting the header is not believed
    assert _connect("/ws/agent/", headers, scheme="ws")["type"] == "refused"
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert _connect("/ws/agent/", headers, scheme="ws")["type"] != "refused"


@pytest.fixture
def webchat():
    return ChannelAccount.objects.create(
        name="Shop chat",
        kind=AccountKind.WEBCHAT,
        queue=QueueFactory(name="Web chat"),
        service_channel=ServiceChannelFactory(key="chat"),
        allowed_origins="https://shop.example.com https://*.shops.example.com:8443",
        bot_flow=[],
    )


@pytest.mark.parametrize(
    ("origin", "outcome"),
    [
        ("https://shop.example.com", "hello"),
        ("https://shop.example.com:443", "hello"),
        ("https://eu.shops.example.com:8443", "hello"),  # wildcard subdomain, same port
        ("https://support.example.com", "hello"),  # this server's own page (the demo shop)
        ("https://shop.example.com:8443", 4403),  # wrong port
        ("http://shop.example.com", 4403),  # wrong scheme
        ("https://eu.shops.example.com", 4403),  # wildcard, wrong port
        ("https://shop.example.com.evil.net", 4403),  # other host
        ("https://evil.example.net", 4403),
    ],
)
def test_the_web_chat_checks_scheme_host_and_port(webchat, origin, outcome):
    headers = [(b"host", b"support.example.com"), (b"origin", origin.encode())]
    frame = _connect(f"/ws/webchat/{webchat.public_key}/", headers)
    if outcome == "hello":
        assert frame["type"] == "websocket.send"
        assert '"type": "hello"' in frame["text"]
    else:
        assert frame == {"type": "websocket.close", "code": outcome}


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("https://a.example.com", ("https", "a.example.com", 443)),
        ("HTTP://A.Example.com:80/", ("http", "a.example.com", 80)),
        ("https://a.example.com:8443", ("https", "a.example.com", 8443)),
        ("https://*.example.com", ("https", "*.example.com", 443)),
        ("ftp://a.example.com", None),
        ("https://a.example.com/path", None),
        ("https://a.example.com:99999", None),
        ("null", None),
        ("", None),
    ],
)
def test_parse_origin(value, parsed):
    result = parse_origin(value)
    assert (tuple(result) if result else None) == parsed
