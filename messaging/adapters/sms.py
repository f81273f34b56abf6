"""SMS through a provider speaking Twilio's Messaging API.

Inbound: form-encoded webhooks (From, To, Body, MessageSid, AccountSid, NumMedia, ...) signed
with ``X-Twilio-Signature`` (HMAC-SHA1 of the full URL plus the sorted POST parameters, keyed with
the account's auth token), checked with the ``twilio`` package's ``RequestValidator``. Status
callbacks carry ``MessageStatus``. Outbound: ``POST {base}/2010-04-01/Accounts/{sid}/Messages.json``
with To, From, Body and HTTP Basic auth (account SID, auth token); the answer's ``sid`` names the
message in later status callbacks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import QueryDict
from twilio.request_validator import RequestValidator

from messaging.adapters.base import (
    InboundMessage,
    MalformedPayload,
    ProviderError,
    StatusUpdate,
    json_or_empty,
    post,
    raise_for_status,
)

if TYPE_CHECKING:
    from messaging.models import ChannelAccount

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
SIGNATURE_HEADER = "HTTP_X_TWILIO_SIGNATURE"

# Twilio's MessageStatus values, in our words. Others (accepted, queued, sending, receiving,
# received, scheduled, canceled) say nothing new about an outbound message we hold.
_STATUS = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "failed",
    "failed": "failed",
}


def valid_signature(account: ChannelAccount, url: str, params: QueryDict, signature: str) -> bool:
    if not account.auth_token or not signature:
        return False
    return RequestValidator(account.auth_token).validate(url, params, signature)


def parse(params: QueryDict, account: ChannelAccount) -> list[InboundMessage | StatusUpdate]:
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if not sid:
        raise MalformedPayload("MessageSid is missing.")
    if (
        params.get("AccountSid")
        and account.account_sid
        and (params["AccountSid"] != account.account_sid)
    ):
        raise MalformedPayload("AccountSid does not match this channel account.")
    if "MessageStatus" in params and "Body" not in params:
        status = _STATUS.get(params.get("MessageStatus", ""))
        if status is None:
            return []
        error = ""
        if status == "failed":
            code = params.get("ErrorCode", "")
            error = params.get("ErrorMessage") or (f"Error {code}" if code else "Undelivered")
        return [StatusUpdate(provider_message_id=sid, status=status, error=error)]
    sender = params.get("From", "")
    if not sender or "Body" not in params:
        raise MalformedPayload("From and Body are required.")
    text = params.get("Body", "")
    media = int(params.get("NumMedia") or 0) if (params.get("NumMedia") or "0").isdigit() else 0
    if not text.strip() and media:
        text = f"[{media} attachment(s)]"
    return [InboundMessage(sender=sender, text=text, provider_message_id=sid)]


def send(account: ChannelAccount, *, to: str, text: str, status_callback: str = "") -> str:
    """Send ``text`` to ``to``; returns the provider's message SID."""
    url = (
        f"{account.provider_base_url.rstrip('/')}/2010-04-01/Accounts/"
        f"{account.account_sid}/Messages.json"
    )
    data = {"To": to, "From": account.phone_number, "Body": text}
    if status_callback:
        data["StatusCallback"] = status_callback
    response = post(url, data=data, auth=(account.account_sid, account.auth_token))
    body = json_or_empty(response)
    message = str(body.get("message") or "")
    if body.get("code") and message:
        message = f"{message} (code {body['code']})"
    raise_for_status(response, message)
    sid = body.get("sid")
    if not isinstance(sid, str) or not sid:
        raise ProviderError("The provider's answer has no message sid.", transient=False)
    return sid
