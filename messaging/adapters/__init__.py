"""Channel adapters: each speaks one provider's wire format, inbound and outbound.

An adapter checks a webhook's signature, parses its payload into ``InboundMessage`` and
``StatusUpdate`` events, and sends a text through the provider's REST API. Adapters know HTTP and
the provider; they never touch the database: the webhook views hand their events to
``messaging.services``.
"""

from __future__ import annotations

from types import ModuleType

from messaging.adapters import messenger, sms, whatsapp
from messaging.adapters.base import (
    InboundMessage,
    MalformedPayload,
    ProviderError,
    StatusUpdate,
)

ADAPTERS: dict[str, ModuleType] = {"sms": sms, "whatsapp": whatsapp, "messenger": messenger}


def adapter_for(kind: str) -> ModuleType:
    """The adapter module for a channel account kind (web chat has none: it is our own socket)."""
    try:
        return ADAPTERS[kind]
    except KeyError:
        raise ValueError(f"No provider adapter for {kind!r} accounts.") from None


__all__ = [
    "ADAPTERS",
    "InboundMessage",
    "MalformedPayload",
    "ProviderError",
    "StatusUpdate",
    "adapter_for",
]
