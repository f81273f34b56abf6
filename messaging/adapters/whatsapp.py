"""WhatsApp through the Cloud API.

Inbound: ``GET`` verification handshake (``hub.mode=subscribe``, ``hub.verify_token``,
``hub.challenge``); ``POST`` JSON with ``object: whatsapp_business_account`` and
``entry[].changes[].value`` holding ``messages[]`` (from, id, type, text.body), ``contacts[]``
(profile.name) and ``statuses[]`` (id, status, errors[]), signed with ``X-Hub-Signature-256``.
Outbound: ``POST {base}/{version}/{phone_number_id}/messages`` with a Bearer token and
``{"messaging_product": "whatsapp", "to": ..., "type": "text", "text": {"body": ...}}``; the
answer's ``messages[0].id`` names the message.
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

_STATUS = {"sent": "sent", "delivered": "delivered", "read": "delivered", "failed": "failed"}


def parse(body: Any, account: ChannelAccount) -> list[InboundMessage | StatusUpdate]:
    if not isinstance(body, dict) or body.get("object") != "whatsapp_business_account":
        raise MalformedPayload("Not a WhatsApp Business Account notification.")
    entries = body.get("entry")
    if not isinstance(entries, list):
        raise MalformedPayload("entry must be a list.")
    events: list[InboundMessage | StatusUpdate] = []
    try:
        for entry in entries:
            for change in entry.get("changes") or []:
                value = change.get("value") or {}
                metadata = value.get("metadata") or {}
                number_id = metadata.get("phone_number_id")
                if number_id and account.phone_number_id and number_id != account.phone_number_id:
                    raise MalformedPayload("phone_number_id does not match this account.")
                names = {
                    c["wa_id"]: (c.get("profile") or {}).get("name", "")
                    for c in value.get("contacts") or []
                    if c.get("wa_id")
                }
                for message in value.get("messages") or []:
                    events.append(_message(message, names))
                for status in value.get("statuses") or []:
                    update = _status(status)
                    if update is not None:
                        events.append(update)
    except (AttributeError, KeyError, TypeError) as exc:
        raise MalformedPayload(f"Unexpected structure: {exc}") from exc
    return events


def _message(message: dict[str, Any], names: dict[str, str]) -> InboundMessage:
    sender, mid = message.get("from"), message.get("id")
    if not isinstance(sender, str) or not sender or not isinstance(mid, str) or not mid:
        raise MalformedPayload("A message needs from and id.")
    kind = message.get("type")
    if kind == "text":
        text = (message.get("text") or {}).get("body")
        if not isinstance(text, str):
            raise MalformedPayload("A text message needs text.body.")
    elif kind == "button":
        text = str((message.get("button") or {}).get("text") or "")
    elif kind == "interactive":
        reply = message.get("interactive") or {}
        chosen = reply.get("button_reply") or reply.get("list_reply") or {}
        text = str(chosen.get("title") or "")
    else:
        text = f"[{kind or 'unknown'} message]"
    return InboundMessage(
        sender=sender, text=text, provider_message_id=mid, sender_name=names.get(sender, "")
    )


def _status(status: dict[str, Any]) -> StatusUpdate | None:
    mid = status.get("id")
    if not isinstance(mid, str) or not mid:
        raise MalformedPayload("A status needs an id.")
    ours = _STATUS.get(str(status.get("status")))
    if ours is None:
        return None
    error = ""
    if ours == "failed":
        errors = status.get("errors") or [{}]
        first = errors[0] if isinstance(errors[0], dict) else {}
        details = (first.get("error_data") or {}).get("details")
        error = str(details or first.get("message") or first.get("title") or "Failed")
        if first.get("code") is not None:
            error = f"{error} (code {first['code']})"
    return StatusUpdate(provider_message_id=mid, status=ours, error=error)


def send(account: ChannelAccount, *, to: str, text: str, status_callback: str = "") -> str:
    """Send ``text`` to the WhatsApp id ``to``; returns the ``wamid``."""
    version = account.api_version.strip("/") or "v19.0"
    url = f"{account.provider_base_url.rstrip('/')}/{version}/{account.phone_number_id}/messages"
    response = post(
        url,
        json={
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": {"preview_url": False, "body": text},
        },
        headers={"Authorization": f"Bearer {account.access_token}"},
    )
    body = json_or_empty(response)
    raise_for_status(response, graph_error_message(body))
    try:
        mid = body["messages"][0]["id"]
    except (KeyError, IndexError, TypeError):
        raise ProviderError("The provider's answer has no message id.", transient=False) from None
    return str(mid)
