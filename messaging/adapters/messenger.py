"""Facebook Messenger through the Messenger Platform.

Inbound: the same verification handshake and ``X-Hub-Signature-256`` as WhatsApp; ``POST`` JSON
with ``object: page`` and ``entry[].messaging[]`` events: ``sender.id`` (the page-scoped id),
``recipient.id`` (the page), ``message.mid`` and ``message.text``; ``delivery.mids[]`` and
``read`` events. Echoes of our own messages (``message.is_echo``) are ignored. Outbound: the Send
API, ``POST {base}/{version}/me/messages?access_token=...`` with
``{"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": {"text": ...}}``; the
answer's ``message_id`` names the message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from messaging.adapters.base import (
    InboundMessage,
    MalformedPayload,
    ProviderError,
    StatusUpdate,
    graph_error_message,
    json_or_empty,
    post,
    raise_for_status,
)

if TYPE_CHECKING:
    from messaging.models import ChannelAccount


def parse(body: Any, account: ChannelAccount) -> list[InboundMessage | StatusUpdate]:
    if not isinstance(body, dict) or body.get("object") != "page":
        raise MalformedPayload("Not a page notification.")
    entries = body.get("entry")
    if not isinstance(entries, list):
        raise MalformedPayload("entry must be a list.")
    events: list[InboundMessage | StatusUpdate] = []
    try:
        for entry in entries:
            if account.page_id and str(entry.get("id", account.page_id)) != account.page_id:
                raise MalformedPayload("The entry is for another page.")
            for event in entry.get("messaging") or []:
                events.extend(_event(event))
    except (AttributeError, KeyError, TypeError) as exc:
        raise MalformedPayload(f"Unexpected structure: {exc}") from exc
    return events


def _event(event: dict[str, Any]) -> list[InboundMessage | StatusUpdate]:
    if "delivery" in event:
        mids = event["delivery"].get("mids") or []
        return [StatusUpdate(provider_message_id=str(m), status="delivered") for m in mids]
    message = event.get("message")
    if message is None:
        return []  # read receipts, postbacks we do not use, reactions
    if message.get("is_echo"):
        return []
    sender = (event.get("sender") or {}).get("id")
    mid = message.get("mid")
    if not isinstance(sender, str) or not sender or not isinstance(mid, str) or not mid:
        raise MalformedPayload("A message needs sender.id and message.mid.")
    text = message.get("text")
    if text is None:
        quick = (message.get("quick_reply") or {}).get("payload")
        attachments = message.get("attachments") or []
        text = str(quick) if quick else f"[{len(attachments)} attachment(s)]"
    if not isinstance(text, str):
        raise MalformedPayload("message.text must be a string.")
    return [InboundMessage(sender=sender, text=text, provider_message_id=mid)]


def send(account: ChannelAccount, *, to: str, text: str, status_callback: str = "") -> str:
    """Send ``text`` to the page-scoped id ``to``; returns the ``message_id``."""
    version = account.api_version.strip("/") or "v19.0"
    url = f"{account.provider_base_url.rstrip('/')}/{version}/me/messages"
    response = post(
        url,
        params={"access_token": account.access_token},
        json={"recipient": {"id": to}, "messaging_type": "RESPONSE", "message": {"text": text}},
    )
    body = json_or_empty(response)
    raise_for_status(response, graph_error_message(body))
    mid = body.get("message_id")
    if not isinstance(mid, str) or not mid:
        raise ProviderError("The provider's answer has no message_id.", transient=False)
    return mid
