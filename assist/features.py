"""What the models learn from: one text per item, built the same way for training and prediction.

An item's text is its subject, the first customer messages of the record behind it (a
conversation's first inbound messages, a case's description), its channel, and the payload fields
the admin allowed (``AssistConfiguration.payload_fields``: others may hold personal data).

The disposition of a closed item is the code its agent put in square brackets at the start of the
close note (``[refund] Refunded the duplicate charge``); the product has no disposition field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

FIRST_MESSAGES = 3
MAX_TEXT_CHARS = 2000
_DISPOSITION = re.compile(r"^\s*\[([^\]\n]{1,60})\]")


@dataclass(frozen=True)
class Doc:
    """One closed item as training sees it."""

    item_id: int
    created_at: datetime
    text: str
    queue: str
    priority: str
    disposition: str
    note: str
    customer_id: int | None


def disposition_of(note: str) -> str:
    match = _DISPOSITION.match(note or "")
    return match.group(1).strip().lower() if match else ""


def _token(value: Any) -> str:
    return re.sub(r"\W+", "_", str(value).strip().lower())[:40]


def item_text(
    *,
    subject: str,
    messages: Sequence[str] = (),
    channel: str = "",
    payload: Mapping[str, Any] | None = None,
    allowed_fields: Iterable[str] = (),
) -> str:
    """The text both the vectorizers and the explanations see. Channel and allowed payload fields
    become single tokens (``ch_chat``, ``f_product_router``) so they never mix with words."""
    parts = [subject.strip(), *(m.strip() for m in messages[:FIRST_MESSAGES])]
    tokens = [f"ch_{_token(channel)}"] if channel else []
    payload = payload or {}
    for name in allowed_fields:
        value = payload.get(name)
        if isinstance(value, str | int | float | bool) and str(value).strip():
            tokens.append(f"f_{_token(name)}_{_token(value)}")
    text = "\n".join(p for p in parts if p)
    if tokens:
        text = f"{text}\n{' '.join(tokens)}"
    return text[:MAX_TEXT_CHARS]
