"""What adapters hand to the services, and how they report provider failures."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings

# What the records that store an inbound message can hold (CustomerIdentity.value,
# Customer.display_name, Message.provider_message_id).
MAX_IDENTIFIER_CHARS = 200


@dataclass(frozen=True)
class InboundMessage:
    """A customer's message as a provider delivered it.

    Checked on creation, before anything is stored: an identifier the records cannot hold (too
    long, a NUL byte, which PostgreSQL refuses in text) makes the delivery ``MalformedPayload``;
    NUL bytes in the text itself are replaced, so the customer's words still arrive.
    """

    sender: str  # the customer's address on the channel: phone number, WhatsApp id, PSID
    text: str
    provider_message_id: str
    sender_name: str = ""

    def __post_init__(self) -> None:
        for name in ("sender", "provider_message_id", "sender_name"):
            value = getattr(self, name)
            if "\x00" in value:
                raise MalformedPayload(f"{name} contains a NUL byte.")
            if len(value) > MAX_IDENTIFIER_CHARS:
                raise MalformedPayload(
                    f"{name} is {len(value)} characters long; at most {MAX_IDENTIFIER_CHARS}."
                )
        if "\x00" in self.text:
            object.__setattr__(self, "text", self.text.replace("\x00", "\ufffd"))


@dataclass(frozen=True)
class StatusUpdate:
    """A provider's news about one of our outbound messages."""

    provider_message_id: str
    status: str  # one of DeliveryStatus: sent, delivered, failed
    error: str = ""


class MalformedPayload(ValueError):
    """The webhook body cannot be used; nothing is stored. Unsigned bodies never get this far
    (403); a signed delivery that is malformed is acknowledged and logged, so the provider stops
    retrying a delivery that can never succeed (see ``messaging.webhooks``)."""


class ProviderError(Exception):
    """An outbound call failed. ``transient`` failures (5xx, 429, network) are retried."""

    def __init__(self, message: str, *, transient: bool, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.status_code = status_code


def post(url: str, **kwargs: Any) -> requests.Response:
    """POST to a provider; network failures become transient ``ProviderError``s."""
    try:
        return requests.post(url, timeout=settings.MESSAGING_PROVIDER_TIMEOUT_SECONDS, **kwargs)
    except requests.RequestException as exc:
        reason = f"Provider unreachable: {exc.__class__.__name__}"
        raise ProviderError(reason, transient=True) from exc


def raise_for_status(response: requests.Response, message: str) -> None:
    """Turn a provider's error answer into ``ProviderError`` carrying the provider's message."""
    if response.status_code < 400:
        return
    transient = response.status_code == 429 or response.status_code >= 500
    raise ProviderError(
        f"HTTP {response.status_code}: {message}" if message else f"HTTP {response.status_code}",
        transient=transient,
        status_code=response.status_code,
    )


def json_or_empty(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def valid_hub_signature(secret: str, body: bytes, header: str | None) -> bool:
    """Meta's ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, app secret>``."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256="))


def graph_error_message(body: dict[str, Any]) -> str:
    """The message of a Graph API error body ({"error": {"message": ..., "code": ...}})."""
    error = body.get("error")
    if not isinstance(error, dict):
        return ""
    message = str(error.get("message") or "")
    code = error.get("code")
    return f"{message} (code {code})" if code is not None else message
