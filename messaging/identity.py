"""Who a customer is across channels: one spelling per address, and the one-query lookup.

Every address a customer writes from is a ``CustomerIdentity`` (kind, value): the value is
what the channel needs to answer (an E.164 number for SMS, the WhatsApp id, a PSID...). Its
``match_key`` says what the address means beyond its channel:

- a phone number (SMS) or WhatsApp id that is a valid number, read with ``phonenumbers`` (a
  number without a country code is read as one of PHONE_DEFAULT_REGION): ``tel:+14155550100``.
  An SMS from "+1 (415) 555-0100" and a WhatsApp message from "14155550100" share it, so they
  are one customer;
- an e-mail address, trimmed and lower-cased: ``mailto:ana@example.com``;
- anything else (Messenger ids, web-chat visitors) and numbers that are not valid: none. An
  invalid number is kept as given (only spaces and punctuation taken out, as before) and
  matches only the very same spelling on the same channel, never another channel or a
  "nearly equal" number: a short code or a typo must not join two people.

A lookup is one query on two indexes (the unique (kind, value) and the partial match_key
index), however many customers there are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from messaging.models import Customer, CustomerIdentity, IdentityKind
from omnirouter.errors import DomainError


@dataclass(frozen=True)
class Address:
    kind: str
    value: str  # the identity's value: what the channel answers to
    match_key: str | None  # what it means across channels, or None


def e164(raw: str, *, region: str | None = None) -> str | None:
    """The E.164 spelling of a valid phone number, or None. Without a leading "+" (or the
    region's international prefix) the number is read as one of ``region``."""
    region = region or settings.PHONE_DEFAULT_REGION
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _digits_as_given(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    if value.startswith("00"):
        return f"+{digits[2:]}"
    return f"+{digits}" if value.startswith("+") else digits


def normalize(kind: str, value: str, *, region: str | None = None) -> Address:
    """One spelling per address, and its match key (see the module's docstring)."""
    value = (value or "").strip()
    if kind == IdentityKind.PHONE:
        number = e164(value, region=region)
        if number is None:
            return Address(kind, _digits_as_given(value), None)
        return Address(kind, number, f"tel:{number}")
    if kind == IdentityKind.WHATSAPP:
        # A WhatsApp id is the number in international form without "+".
        digits = re.sub(r"\D", "", value)
        number = e164(f"+{digits}") if digits else None
        return Address(kind, digits, f"tel:{number}" if number else None)
    if kind == IdentityKind.EMAIL:
        email = value.casefold()
        try:
            validate_email(email)
        except ValidationError:
            return Address(kind, email, None)
        return Address(kind, email, f"mailto:{email}")
    return Address(kind, value, None)


def normalize_address(kind: str, value: str) -> str:
    """The identity value for an address (``normalize(kind, value).value``)."""
    return normalize(kind, value).value


@dataclass(frozen=True)
class Lookup:
    exact: CustomerIdentity | None  # this very address on this channel
    same: list[CustomerIdentity]  # the same address on other channels (same match key)

    def customers(self) -> list[int]:
        """The distinct customers holding the address, oldest identity first."""
        seen: list[int] = []
        for identity in [*([self.exact] if self.exact else []), *self.same]:
            if identity.customer_id not in seen:
                seen.append(identity.customer_id)
        return seen


def lookup(address: Address) -> Lookup:
    """Who holds this address: one query, whatever the number of customers."""
    wanted = Q(kind=address.kind, value=address.value)
    if address.match_key:
        wanted |= Q(match_key=address.match_key)
    rows = list(
        CustomerIdentity.objects.select_related("customer").filter(wanted).order_by("pk")[:20]
    )
    exact = next((r for r in rows if r.kind == address.kind and r.value == address.value), None)
    return Lookup(exact, [r for r in rows if r is not exact])


def identify_or_create_customer(
    *, kind: str, value: str, name: str = "", now: datetime | None = None
) -> CustomerIdentity:
    """The identity (and its customer) for an address, created if new.

    A new address that means the same as one customer's address on another channel (the same
    valid phone number on SMS and WhatsApp, the same e-mail) joins that customer. When several
    customers have it (duplicates left by the normalising migration, see ``messaging.linking``)
    it joins the one whose identity is oldest, deterministically; agents see the others
    suggested. A name is kept
    only if the customer had none. Queries: one lookup for a known address, plus the inserts
    for a new one.
    """
    now = now or timezone.now()
    if kind not in IdentityKind.values:
        raise DomainError(f"Unknown identity kind {kind!r}.", "kind")
    address = normalize(kind, value)
    if not address.value:
        raise DomainError("The address is empty.", "address")
    name = (name or "").strip()[:200]
    found = lookup(address)
    identity = found.exact
    if identity is None:
        linked = found.same[0].customer if found.same else None
        try:
            with transaction.atomic():
                customer = linked or Customer.objects.create(display_name=name, created_at=now)
                identity = CustomerIdentity.objects.create(
                    customer=customer,
                    kind=kind,
                    value=address.value,
                    match_key=address.match_key,
                    created_at=now,
                )
        except IntegrityError:
            # Created at the same moment by another message from this address.
            identity = CustomerIdentity.objects.select_related("customer").get(
                kind=kind, value=address.value
            )
    if name and not identity.customer.display_name:
        Customer.objects.filter(pk=identity.customer_id, display_name="").update(display_name=name)
        identity.customer.display_name = name
    return identity
