"""Messaging fixtures: a routing world with channel accounts, and fake providers on loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from messaging.models import AccountKind, ChannelAccount
from tests.factories import (
    PresenceConfigurationFactory,
    QueueFactory,
    RoutingConfigurationFactory,
    ServiceChannelFactory,
    make_agent,
    make_status,
)

BOT_FLOW = [
    {"key": "name", "ask": "Hi! What's your name?", "skip_if_known": True},
    {
        "key": "topic",
        "ask": "What can we help with?",
        "choices": [
            {"label": "Orders", "value": "orders", "queue": "Orders"},
            {"label": "Billing", "value": "billing"},
        ],
    },
    {
        "key": "order_number",
        "ask": "What is your order number?",
        "when": {"topic": "orders"},
        "pattern": r"[A-Z]{2}-\d{4}",
    },
]


# --- Fake providers --------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode())

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeProvider:
    """A provider on loopback: records every request, answers from a script of responses
    (status, JSON body), then with ``default`` (a function of the request)."""

    url: str
    requests: list[Recorded] = field(default_factory=list)
    script: list[tuple[int, Any]] = field(default_factory=list)
    default: Callable[[Recorded], tuple[int, Any]] = lambda r: (200, {})

    def answer(self, request: Recorded) -> tuple[int, Any]:
        self.requests.append(request)
        if self.script:
            return self.script.pop(0)
        return self.default(request)


@pytest.fixture
def fake_provider() -> Iterator[FakeProvider]:
    provider = FakeProvider(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            parts = urlsplit(self.path)
            recorded = Recorded(
                method="POST",
                path=parts.path,
                query=parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length),
            )
            status, body = provider.answer(recorded)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    provider.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()


# --- Signing, as the providers do it ---------------------------------------------------------


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's documented scheme, written out independently of the code under test."""
    signed = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def hub_signature(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def post_twilio(client: Any, account: ChannelAccount, params: dict[str, str], token: str = ""):
    path = f"/webhooks/sms/{account.pk}/"
    signature = twilio_signature(token or account.auth_token, f"http://testserver{path}", params)
    return client.post(
        path,
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )


def post_meta(client: Any, account: ChannelAccount, payload: Any, secret: str = ""):
    body = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
    return client.post(
        f"/webhooks/{account.kind}/{account.pk}/",
        data=body,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=hub_signature(secret or account.app_secret, body),
    )


def sms_params(account: ChannelAccount, sender: str, body: str, sid: str) -> dict[str, str]:
    return {
        "ToCountry": "US",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": body,
        "To": account.phone_number,
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": account.account_sid,
        "From": sender,
        "ApiVersion": "2010-04-01",
    }


def whatsapp_payload(
    account: ChannelAccount, wa_id: str, text: str, wamid: str, name: str = "Yuki Sato"
) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": account.phone_number_id,
                            },
                            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                            "messages": [
                                {
                                    "from": wa_id,
                                    "id": wamid,
                                    "timestamp": "1749416383",
                                    "type": "text",
                                    "text": {"body": text},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }


def messenger_payload(account: ChannelAccount, psid: str, text: str, mid: str) -> dict[str, Any]:
    return {
        "object": "page",
        "entry": [
            {
                "id": account.page_id,
                "time": 1458692752478,
                "messaging": [
                    {
                        "sender": {"id": psid},
                        "recipient": {"id": account.page_id},
                        "timestamp": 1458692752478,
                        "message": {"mid": mid, "text": text},
                    }
                ],
            }
        ],
    }


# --- The routing world -----------------------------------------------------------------------


@dataclass
class World:
    messaging: Any
    chat: Any
    case: Any
    queue: Any
    orders: Any
    chat_queue: Any
    cases: Any
    status: Any
    sms: ChannelAccount
    whatsapp: ChannelAccount
    messenger: ChannelAccount
    webchat: ChannelAccount

    def agent(self, username: str, *, online: bool = True, first_name: str = "") -> Any:
        agent = make_agent(
            username,
            queues=[self.queue, self.orders, self.chat_queue, self.cases],
            config=PresenceConfigurationFactory(capacity=10, console_required=False),
            status=self.status if online else None,
        )
        if first_name:
            agent.user.first_name = first_name
            agent.user.save(update_fields=["first_name"])
        return agent


@pytest.fixture
def world(db, settings, fake_provider: FakeProvider) -> World:
    """Channels, queues, an online status, and one account per channel kind whose provider is
    the loopback fake. Routing runs only when the test asks (ROUTING_MODE=manual)."""
    settings.ROUTING_MODE = "manual"
    settings.MESSAGING_SEND_BACKOFF_SECONDS = 2.0
    settings.MESSAGING_SEND_MAX_ATTEMPTS = 3
    settings.MESSAGING_STICKY_SECONDS = 60
    messaging = ServiceChannelFactory(key="messaging", label="Messaging")
    chat = ServiceChannelFactory(key="chat", label="Web chat")
    case = ServiceChannelFactory(key="case", label="Case", default_size_units=2)
    config = RoutingConfigurationFactory(size_units=1)
    queue = QueueFactory(name="SMS & WhatsApp", routing_config=config)
    orders = QueueFactory(name="Orders", routing_config=config)
    chat_queue = QueueFactory(name="Web chat", routing_config=config)
    cases = QueueFactory(name="Support cases", routing_config=RoutingConfigurationFactory())
    settings.MESSAGING_CASE_QUEUE = "Support cases"
    status = make_status("Available", [messaging, chat, case])
    common = {"queue": queue, "service_channel": messaging, "provider_base_url": fake_provider.url}
    sms = ChannelAccount.objects.create(
        name="Support SMS",
        kind=AccountKind.SMS,
        account_sid="AC0123456789abcdef0123456789abcdef",
        auth_token="twilio-auth-token",
        phone_number="+15005550006",
        **common,
    )
    whatsapp = ChannelAccount.objects.create(
        name="Support WhatsApp",
        kind=AccountKind.WHATSAPP,
        phone_number_id="106540352242922",
        app_secret="wa-app-secret",
        access_token="wa-access-token",
        verify_token="wa-verify",
        api_version="v21.0",
        **common,
    )
    messenger = ChannelAccount.objects.create(
        name="Support page",
        kind=AccountKind.MESSENGER,
        page_id="1234567890",
        app_secret="fb-app-secret",
        access_token="fb-page-token",
        verify_token="fb-verify",
        api_version="v21.0",
        **common,
    )
    webchat = ChannelAccount.objects.create(
        name="Shop chat",
        kind=AccountKind.WEBCHAT,
        queue=chat_queue,
        service_channel=chat,
        allowed_origins="https://shop.example.com",
        bot_flow=BOT_FLOW,
    )
    return World(
        messaging, chat, case, queue, orders, chat_queue, cases, status,
        sms, whatsapp, messenger, webchat,
    )  # fmt: skip


# --- Who sees what ---------------------------------------------------------------------------


@dataclass
class Center:
    """Two SMS customers, A and B, whose conversations the holder answers in ``world.queue``;
    and one user per role around them."""

    world: World
    holder: Any  # the agent answering both conversations
    colleague: Any  # a member of the same queue who never had them
    other: Any  # an agent of another queue
    admin: Any
    supervisor: Any  # supervises world.queue
    other_supervisor: Any  # supervises world.orders only
    intake: Any
    customer_a: Any
    customer_b: Any
    conversation_a: Any
    conversation_b: Any

    def user(self, role: str) -> Any:
        if role == "anonymous":
            return None
        person = getattr(self, role)
        return getattr(person, "user", person)  # an agent logs in as their user


@pytest.fixture
def center(world: World) -> Center:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from messaging import services
    from messaging.models import Conversation
    from routing import services as routing

    users = get_user_model().objects
    config = PresenceConfigurationFactory(capacity=10, console_required=False)
    holder = make_agent("holder", queues=[world.queue], config=config, status=world.status)
    services.receive_inbound(
        account=world.sms, sender="+15550000001", text="A here", sender_name="Ana"
    )
    services.receive_inbound(
        account=world.sms, sender="+15550000002", text="B here", sender_name="Ben"
    )
    routing.route_waiting_work()
    for work in holder.works.filter(state="pushed"):
        routing.accept_work(work_id=work.pk, agent=holder)
    conversation_a = Conversation.objects.get(identity__value="+15550000001")
    conversation_b = Conversation.objects.get(identity__value="+15550000002")
    colleague = make_agent("colleague", queues=[world.queue], config=config)
    other = make_agent("other", queues=[world.orders], config=config)
    supervisors, _ = Group.objects.get_or_create(name="supervisor")
    supervisor = users.create_user("sup", password="x")
    supervisor.groups.add(supervisors)
    world.queue.supervisors.add(supervisor)
    other_supervisor = users.create_user("sup-orders", password="x")
    other_supervisor.groups.add(supervisors)
    world.orders.supervisors.add(other_supervisor)
    intake = users.create_user("crm", password="x")
    intake.groups.add(Group.objects.get_or_create(name="intake")[0])
    return Center(
        world, holder, colleague, other, users.create_superuser("root", password="x"),
        supervisor, other_supervisor, intake,
        conversation_a.customer, conversation_b.customer, conversation_a, conversation_b,
    )  # fmt: skip
