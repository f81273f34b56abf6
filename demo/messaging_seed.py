"""Demo messaging accounts for the embedded run: one per channel, sandboxed (no provider calls),
each with a pre-chat bot; quick replies; the demo's customers, each one person with one mobile
number (used on SMS and on WhatsApp) and one e-mail address. Idempotent. Needs the routing demo
(queues, channels)."""

from __future__ import annotations

import secrets
from typing import Any

from django.db import transaction
from django.utils import timezone

from messaging.identity import normalize
from messaging.models import AccountKind, ChannelAccount, Customer, CustomerIdentity, QuickReply
from routing.models import Queue, ServiceChannel

BOT_FLOW: list[dict[str, Any]] = [
    {"key": "name", "ask": "Hi! I'm the Lumen assistant. What's your name?", "skip_if_known": True},
    {
        "key": "topic",
        "ask": "What can we help you with?",
        "choices": [
            {"label": "An order", "value": "order"},
            {"label": "Returns and refunds", "value": "returns"},
            {"label": "Something else", "value": "other"},
        ],
    },
    {
        "key": "order_number",
        "ask": "What is your order number? (like LU-12345)",
        "when": {"topic": "order"},
        "pattern": r"(?i)LU-?\d{4,6}",
    },
]
BOT_FLOW_JA: list[dict[str, Any]] = [
    {"key": "name", "ask": "こんにちは！お名前を教えてください。", "skip_if_known": True},
    {
        "key": "topic",
        "ask": "ご用件をお選びください。",
        "choices": [
            {"label": "注文について", "value": "order"},
            {"label": "返品・返金", "value": "returns"},
            {"label": "その他", "value": "other"},
        ],
    },
]
# The simulated customers (demo.inbound): the same number writes by SMS and on WhatsApp, so a
# person who comes back on the other channel is one customer with one history.
NAMES = [
    "Aiko Sato", "Ben Carter", "Chloe Martin", "Diego Garcia", "Emma Müller", "Farid Haddad",
    "Grace Kim", "Hiro Tanaka", "Ines Silva", "Jonas Berg", "Kenji Ito", "Lena Rossi",
]  # fmt: skip


def demo_mobile(n: int) -> str:
    """Person ``n``'s mobile number in E.164 (valid numbers of the 555-01xx fiction range)."""
    return f"+1415555{100 + n:04d}"


def demo_email(n: int) -> str:
    return f"{NAMES[n].split()[0].lower()}@example.com"


QUICK_REPLIES = [
    ("Greeting", "Hello! Thanks for reaching out. How can I help?", "en"),
    ("Checking", "Let me check that for you, one moment please.", "en"),
    ("Tracking", "Your parcel is on its way; you will get a tracking link by e-mail.", "en"),
    ("Goodbye", "Is there anything else I can help with? Have a nice day!", "en"),
    ("挨拶", "お問い合わせありがとうございます。ご用件を伺います。", "ja"),
    ("確認中", "確認いたしますので、少々お待ちください。", "ja"),
]


@transaction.atomic
def seed_messaging_demo() -> dict[str, ChannelAccount]:
    """Create the demo channel accounts if missing; return them by kind."""
    messaging = ServiceChannel.objects.filter(key="messaging").first()
    chat = ServiceChannel.objects.filter(key="chat").first()
    sms_queue = Queue.objects.filter(name="SMS & WhatsApp").first()
    chat_queue = Queue.objects.filter(name="Web chat").first()
    if not (messaging and chat and sms_queue and chat_queue):
        return {}
    specs = [
        ("Lumen SMS", AccountKind.SMS, sms_queue, messaging,
         {"account_sid": "AC" + secrets.token_hex(16), "phone_number": "+15005550006",
          "auth_token": secrets.token_hex(16)}),
        ("Lumen WhatsApp", AccountKind.WHATSAPP, sms_queue, messaging,
         {"phone_number_id": "106540352242922", "app_secret": secrets.token_hex(16),
          "access_token": secrets.token_urlsafe(24), "verify_token": secrets.token_urlsafe(9)}),
        ("Lumen Messenger", AccountKind.MESSENGER, sms_queue, messaging,
         {"page_id": "1234567890", "app_secret": secrets.token_hex(16),
          "access_token": secrets.token_urlsafe(24), "verify_token": secrets.token_urlsafe(9)}),
        ("Lumen shop chat", AccountKind.WEBCHAT, chat_queue, chat, {}),
    ]  # fmt: skip
    accounts: dict[str, ChannelAccount] = {}
    for name, kind, queue, channel, extra in specs:
        account, _ = ChannelAccount.objects.get_or_create(
            name=name,
            defaults={
                "kind": kind,
                "queue": queue,
                "service_channel": channel,
                "bot_flow": BOT_FLOW,
                "provider_base_url": "",  # sandbox: replies are marked sent, no provider call
                **extra,
            },
        )
        accounts[kind] = account
    seed_demo_customers()
    if not QuickReply.objects.exists():
        QuickReply.objects.bulk_create(
            QuickReply(title=title, text=text, language=lang, position=n)
            for n, (title, text, lang) in enumerate(QUICK_REPLIES)
        )
    return accounts


def seed_demo_customers() -> int:
    """One customer per demo person, known by their mobile number and e-mail address (a case
    from the help page and a message by SMS or WhatsApp all land on them). Returns how many
    were made (0 when they exist)."""
    now = timezone.now()
    made = 0
    for n, name in enumerate(NAMES):
        phone = normalize("phone", demo_mobile(n))
        if CustomerIdentity.objects.filter(kind="phone", value=phone.value).exists():
            continue
        customer = Customer.objects.create(display_name=name, created_at=now)
        email = normalize("email", demo_email(n))
        for address in (phone, email):
            CustomerIdentity.objects.get_or_create(
                kind=address.kind,
                value=address.value,
                defaults={"customer": customer, "match_key": address.match_key, "created_at": now},
            )
        made += 1
    return made
