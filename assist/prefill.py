"""Prefill: values read from an item's first messages, offered to the agent to accept or correct.

Order numbers (``ORD-123456`` or ``#123456``), e-mail addresses, phone numbers, a product of the
catalogue (``ASSIST_PRODUCT_CATALOGUE``), the language (Japanese script or not), and the category
(the predicted queue). Plain patterns: every value says where it came from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

ORDER = re.compile(r"(?:(?<![A-Za-z0-9])ORD-\d{5,10}(?!\d)|(?<![A-Za-z0-9#])#\d{5,10}(?!\d))", re.I)
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
PHONE = re.compile(r"(?<![\w-])\+?\d[\d\s().-]{7,}\d(?![\w-])")
JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")


def language_of(text: str) -> str:
    """ "ja" when a tenth of the letters or more are kana or kanji, else "en"."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return ""
    japanese = sum(1 for c in letters if JAPANESE.match(c))
    return "ja" if japanese * 10 >= len(letters) else "en"


def extract(text: str, *, catalogue: Sequence[str] = ()) -> dict[str, Any]:
    """Suggested values found in ``text`` (a field is absent when nothing was found)."""
    found: dict[str, Any] = {}
    order = ORDER.search(text)
    if order:
        found["order_number"] = order.group(0).upper()
    email = EMAIL.search(text)
    if email:
        found["email"] = email.group(0)
    without_orders = ORDER.sub(" ", text)
    phone = PHONE.search(without_orders)
    if phone:
        found["phone"] = phone.group(0).strip()
    lowered = text.lower()
    for product in catalogue:
        if product.lower() in lowered:
            found["product"] = product
            break
    language = language_of(text)
    if language:
        found["language"] = language
    return found


def redact(text: str) -> str:
    """``text`` without the e-mail addresses, phone numbers and order numbers in it: what an
    agent sees of another customer's resolved item."""
    # Any word with an "@": an address cut short ("kim@exam...") is still personal data.
    text = re.sub(r"[^\s@]*@\S*", "[e-mail]", text)
    text = ORDER.sub("[order]", text)
    return PHONE.sub("[phone]", text)
