"""Realistic inbound traffic for the embedded demo, on every messaging channel.

``simulate_inbound(kind)`` sends one customer message the way the provider would: SMS as a
Twilio-signed form webhook, WhatsApp and Messenger as ``X-Hub-Signature-256``-signed JSON, each
through the real webhook view (signature check and parsing included, in-process, no network);
web chat through the same service the widget's socket calls. Customers come from a small pool,
so some return (sticky routing, history), on SMS or WhatsApp from the same number (one customer,
demo.messaging_seed), and answer the bot's questions as a person would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.test import RequestFactory

from demo import messaging_seed as demo
from messaging import services, webhooks
from messaging.models import AccountKind, ChannelAccount, Conversation, Message

KINDS = ("sms", "whatsapp", "messenger", "webchat")
NAMES = demo.NAMES
OPENERS = [
    "Hi, where is my order?",
    "Hello, I'd like to return a jacket.",
    "My parcel arrived damaged :(",
    "Can I change my delivery address?",
    "Do you have the trail tent in green?",
    "I was charged twice for one order.",
    "agent please",
]
FOLLOW_UPS = [
    "Any news?",
    "Thanks!",
    "It was supposed to arrive yesterday.",
    "Order LU-20931, if that helps.",
    "Great, thank you very much.",
    "Could you send me the tracking link?",
]


def _host() -> str:
    hosts = [h for h in settings.ALLOWED_HOSTS if h and "*" not in h and not h.startswith(".")]
    return hosts[0] if hosts else "localhost"


def _account(kind: str) -> ChannelAccount | None:
    account = ChannelAccount.objects.filter(kind=kind, active=True).order_by("pk").first()
    if account is None:
        account = demo.seed_messaging_demo().get(kind)
    return account


def _customer_text(
    account: ChannelAccount, address: str, name: str, rng: random.Random, opener: str | None = None
) -> str:
    """What this customer would write now: the answer the bot waits for, or a message."""
    conversation = (
        Conversation.objects.filter(account=account, identity__value=address)
        .exclude(status="ended")
        .first()
    )
    if conversation is None:
        return opener or rng.choice(OPENERS)
    if conversation.status == "bot":
        step_index = (conversation.bot_state or {}).get("step")
        flow = account.bot_flow or []
        if isinstance(step_index, int) and 0 <= step_index < len(flow):
            step = flow[step_index]
            if step.get("key") == "name":
                return name
            if step.get("choices"):
                return rng.choice(step["choices"])["label"]
            if step.get("key") == "order_number":
                return f"LU-{rng.randint(10000, 99999)}"
    return rng.choice(FOLLOW_UPS)


def simulate_inbound(
    channel_kind: str,
    *,
    rng: random.Random | None = None,
    text: str | None = None,
    name: str | None = None,
) -> Message | None:
    """Send one realistic inbound message on ``channel_kind`` and return the stored message
    (None when no account of that kind exists).

    ``channel_kind``: an account kind (sms, whatsapp, messenger, webchat), or a service channel
    key: ``chat`` is web chat, ``messaging`` one of SMS, WhatsApp, Messenger at random. ``text``
    opens a new conversation (a customer in the middle of one answers the bot or follows up
    instead). ``name`` is accepted for the routing simulator's call but not used: customers come
    from a fixed pool so a returning customer keeps their name on every channel.
    """
    rng = rng or random.Random()
    if channel_kind == "chat":
        channel_kind = AccountKind.WEBCHAT
    elif channel_kind == "messaging":
        channel_kind = rng.choice([AccountKind.SMS, AccountKind.WHATSAPP, AccountKind.MESSENGER])
    if channel_kind not in KINDS:
        raise ValueError(f"Unknown channel kind {channel_kind!r}; use one of {KINDS}.")
    account = _account(channel_kind)
    if account is None:
        return None
    n = rng.randrange(len(NAMES))
    name = NAMES[n]
    if channel_kind == AccountKind.WEBCHAT:
        visitor = services.visitor_key(f"demo-visitor-{n}")
        text = _customer_text(account, visitor, name, rng, opener=text)
        return services.receive_webchat(account=account, visitor=visitor, text=text).message
    if channel_kind == AccountKind.SMS:
        address = demo.demo_mobile(n)  # the same person's number on SMS and WhatsApp
        text = _customer_text(account, address, name, rng, opener=text)
        pid = "SM" + uuid.uuid4().hex
        _post_sms(account, address, text, pid)
    elif channel_kind == AccountKind.WHATSAPP:
        address = demo.demo_mobile(n).lstrip("+")
        text = _customer_text(account, address, name, rng, opener=text)
        pid = "wamid." + base64.b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        _post_meta(account, _whatsapp_body(account, address, name, text, pid))
    else:
        address = f"{7100000000000000 + n}"
        text = _customer_text(account, address, name, rng, opener=text)
        pid = "m_" + uuid.uuid4().hex
        _post_meta(account, _messenger_body(account, address, text, pid))
    return Message.objects.filter(account=account, provider_message_id=pid).first()


def _post_sms(account: ChannelAccount, sender: str, text: str, sid: str) -> None:
    path = f"/webhooks/sms/{account.pk}/"
    params = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": account.account_sid,
        "From": sender,
        "To": account.phone_number,
        "Body": text,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }
    url = f"http://{_host()}{path}"
    signed = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    signature = base64.b64encode(
        hmac.new(account.auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    ).decode()
    request = RequestFactory().post(
        path,
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        HTTP_HOST=_host(),
        HTTP_X_TWILIO_SIGNATURE=signature,
    )
    _check(webhooks.sms_webhook(request, account_id=account.pk))


def _post_meta(account: ChannelAccount, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    signature = "sha256=" + hmac.new(account.app_secret.encode(), raw, hashlib.sha256).hexdigest()
    view = webhooks.whatsapp_webhook if account.kind == "whatsapp" else webhooks.messenger_webhook
    request = RequestFactory().post(
        f"/webhooks/{account.kind}/{account.pk}/",
        data=raw,
        content_type="application/json",
        HTTP_HOST=_host(),
        HTTP_X_HUB_SIGNATURE_256=signature,
    )
    _check(view(request, account_id=account.pk))


def _check(response: Any) -> None:
    if response.status_code != 200:
        status, body = response.status_code, response.content
        raise RuntimeError(f"simulated webhook refused: {status} {body!r}")


def _whatsapp_body(
    account: ChannelAccount, wa_id: str, name: str, text: str, wamid: str
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
                                    "timestamp": str(int(time.time())),
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


def _messenger_body(account: ChannelAccount, psid: str, text: str, mid: str) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    return {
        "object": "page",
        "entry": [
            {
                "id": account.page_id,
                "time": now_ms,
                "messaging": [
                    {
                        "sender": {"id": psid},
                        "recipient": {"id": account.page_id},
                        "timestamp": now_ms,
                        "message": {"mid": mid, "text": text},
                    }
                ],
            }
        ],
    }


__all__ = ["KINDS", "simulate_inbound"]
