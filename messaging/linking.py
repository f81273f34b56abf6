"""Linking channels that share no identifier (Messenger, anonymous web chat) to a known customer.

When a customer gives an e-mail address or phone number, to the bot (a flow step whose key is
``email`` or ``phone``) or to the agent ("Add an address" on the customer panel,
``add_identity``):

- nobody has it yet: it becomes one of this customer's identities at once;
- this customer has it already: nothing changes;
- another customer has it: this is the same person only if they can prove it. Where that
  address can be written to (a phone number over the SMS or WhatsApp account, an e-mail by
  mail), a six-digit code goes there and the customer types it back in the conversation they
  are in (``take_code_reply``): right, and the two customers are merged (logged in a
  ``MergeRecord`` with no actor, undone like any merge); wrong too often, or too late, or no way
  to send a code (an agent adding it without a conversation), and the match is *suggested* to
  agents, who merge it with one click (``merge_suggested``: supervisors, or the agent
  answering both).

Codes are stored only as a salted HMAC, expire after MESSAGING_IDENTITY_CODE_TTL_SECONDS and
allow MESSAGING_IDENTITY_CODE_MAX_ATTEMPTS wrong tries. Customers who share a match key (left by
the normalising migration, which merges nothing) are suggested too.

Lock order, as in ``messaging.services``: customers (by id) -> identity -> conversation, then
the claim. A right code is found under the conversation's lock, so the merge (which locks
customers first) runs after that transaction commits.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from messaging.adapters import adapter_for
from messaging.identity import Address, lookup, normalize
from messaging.merging import apply_merge
from messaging.models import (
    AccountKind,
    ChannelAccount,
    ClaimStatus,
    Conversation,
    Customer,
    CustomerIdentity,
    IdentityClaim,
    IdentityKind,
)
from messaging.selectors import holds_work_on, may_merge, resolve_customer
from omnirouter import roles
from omnirouter.errors import DomainError, Forbidden, NotFound

logger = logging.getLogger(__name__)

LINKABLE_KINDS = (IdentityKind.PHONE, IdentityKind.WHATSAPP, IdentityKind.EMAIL)
# Bot flow keys whose answers are addresses the customer says are theirs.
BOT_ADDRESS_KEYS = {"email": IdentityKind.EMAIL, "phone": IdentityKind.PHONE}
_CODE = re.compile(r"^\s*(\d{6})\s*$")
_CODE_SALT = "messaging.identity-claim"

# How this module speaks to the customer in their conversation: ``services.say_to_customer``,
# passed in by messaging.services (which imports this module, not the other way round).
Say = Callable[..., Any]


@dataclass(frozen=True)
class ClaimOutcome:
    status: str  # added, already, code_sent, suggested
    identity: CustomerIdentity | None = None
    claim: IdentityClaim | None = None
    # The code in clear, to whoever called (never stored, never in an API answer): tests read
    # it from the provider's request instead.
    code: str = ""


def looks_like_code(text: str) -> bool:
    """Six digits alone: the only messages ``take_code_reply`` needs to look at (so no other
    inbound message costs a query)."""
    return bool(_CODE.match(text or ""))


def _hash(salt: str, code: str) -> str:
    return salted_hmac(_CODE_SALT, f"{salt}:{code}", algorithm="sha256").hexdigest()


def mask(identity: CustomerIdentity) -> str:
    """Enough of an address for its owner to recognise it, not enough to learn it."""
    if identity.kind == IdentityKind.EMAIL:
        local, _at, domain = identity.value.partition("@")
        return f"{local[:1]}•••@{domain}"
    return f"•••{identity.value[-4:]}"


def add_identity(
    *,
    customer: Customer,
    kind: str,
    value: str,
    actor: User | None,
    say: Say,
    conversation: Conversation | None = None,
    now: datetime | None = None,
) -> ClaimOutcome:
    """The customer says ``value`` (a phone number, WhatsApp number or e-mail) is theirs.

    ``actor`` is the agent or supervisor who typed it (a supervisor, or an agent holding
    accepted work on this customer), or None for the bot. ``conversation``: where the customer
    is writing now, so a code can be typed back there. See the module's docstring for what
    happens. Side effects: the customer is told in ``conversation`` (through ``say``) that a
    code was sent; the code leaves after commit by SMS, WhatsApp or e-mail. Callers outside
    messaging use ``services.add_customer_identity``.
    """
    now = now or timezone.now()
    if kind not in LINKABLE_KINDS:
        raise DomainError(
            _("Only a phone number, a WhatsApp number or an e-mail address can be added."), "kind"
        )
    address = normalize(kind, value)
    if not address.value:
        raise DomainError(_("The address is empty."), "value")
    if kind == IdentityKind.EMAIL and address.match_key is None:
        raise DomainError(_("This is not a valid e-mail address."), "value")
    customer = resolve_customer(customer)
    if actor is not None and not _may_add(actor, customer):
        raise Forbidden(
            _("Only a supervisor, or the agent answering this customer, may add an address."),
            "not_allowed",
        )
    if conversation is not None and conversation.customer_id != customer.pk:
        conversation = None
    with transaction.atomic():
        found = lookup(address)
        if found.exact is not None and found.exact.customer_id == customer.pk:
            return ClaimOutcome("already", identity=found.exact)
        owner_identity = next(
            (i for i in [found.exact, *found.same] if i and i.customer_id != customer.pk), None
        )
        if owner_identity is None:
            if found.exact is not None:
                return ClaimOutcome("already", identity=found.exact)
            identity = CustomerIdentity.objects.create(
                customer=customer,
                kind=kind,
                value=address.value,
                match_key=address.match_key,
                created_at=now,
            )
            return ClaimOutcome("added", identity=identity)
        return _claim(customer, owner_identity, address, conversation, actor, now, say)


def _may_add(actor: User, customer: Customer) -> bool:
    if roles.is_supervisor(actor):
        return True
    agent = roles.agent_of(actor)
    return agent is not None and holds_work_on(
        agent,
        conversations=Conversation.objects.filter(customer=customer),
        cases=customer.cases.all(),
    )


def _claim(
    customer: Customer,
    owner_identity: CustomerIdentity,
    address: Address,
    conversation: Conversation | None,
    actor: User | None,
    now: datetime,
    say: Say,
) -> ClaimOutcome:
    fields: dict[str, Any] = {
        "customer": customer,
        "owner_id": owner_identity.customer_id,
        "identity": owner_identity,
        "kind": address.kind,
        "value": address.value,
        "created_by": actor,
        "created_at": now,
    }
    route = _code_route(owner_identity) if conversation and conversation.is_open else None
    if route is None:
        claim = IdentityClaim.objects.filter(
            customer=customer, owner_id=owner_identity.customer_id, status=ClaimStatus.SUGGESTED
        ).first() or IdentityClaim.objects.create(status=ClaimStatus.SUGGESTED, **fields)
        return ClaimOutcome("suggested", claim=claim)
    assert conversation is not None
    # A new code replaces one still pending in this conversation.
    IdentityClaim.objects.filter(conversation=conversation, status=ClaimStatus.PENDING).update(
        status=ClaimStatus.DISMISSED, resolved_at=now
    )
    code = f"{secrets.randbelow(10**6):06d}"
    salt = secrets.token_hex(16)
    ttl = settings.MESSAGING_IDENTITY_CODE_TTL_SECONDS
    claim = IdentityClaim.objects.create(
        status=ClaimStatus.PENDING,
        conversation=conversation,
        code_salt=salt,
        code_hash=_hash(salt, code),
        sent_to=mask(owner_identity),
        expires_at=now + timedelta(seconds=ttl),
        **fields,
    )
    channel, account_id = route
    with translation.override(conversation.account.language):
        minutes = max(1, ttl // 60)
        body = ngettext(
            "Your verification code is %(code)s. It works for %(n)s minute. "
            "If you did not ask for it, ignore this message.",
            "Your verification code is %(code)s. It works for %(n)s minutes. "
            "If you did not ask for it, ignore this message.",
            minutes,
        ) % {"code": code, "n": minutes}
        subject = _("Your verification code")
        told = _(
            "We have sent a code to %(address)s. Please type the six digits here to confirm "
            "it is yours."
        ) % {"address": claim.sent_to}
    transaction.on_commit(
        partial(
            _send_code,
            channel=channel,
            account_id=account_id,
            to=owner_identity.value,
            subject=subject,
            body=body,
            claim_id=claim.pk,
        )
    )
    say(conversation=conversation, text=told, now=now)
    return ClaimOutcome("code_sent", claim=claim, code=code)


def _code_route(identity: CustomerIdentity) -> tuple[str, int | None] | None:
    """How a code reaches this address: ("email", None) or (account kind, account id); None
    when there is no way (a Messenger id, no active account of that kind, an invalid number)."""
    if identity.match_key is None:
        return None
    if identity.kind == IdentityKind.EMAIL:
        return "email", None
    kind = AccountKind.SMS if identity.kind == IdentityKind.PHONE else AccountKind.WHATSAPP
    used = (
        Conversation.objects.filter(identity=identity, account__kind=kind, account__active=True)
        .order_by("-started_at", "-id")
        .values_list("account_id", flat=True)
        .first()
    )
    if used is None:
        used = (
            ChannelAccount.objects.filter(kind=kind, active=True)
            .order_by("pk")
            .values_list("pk", flat=True)
            .first()
        )
    return (kind, used) if used is not None else None


def _send_code(
    *, channel: str, account_id: int | None, to: str, subject: str, body: str, claim_id: int
) -> None:
    try:
        if channel == "email":
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [to])
            return
        account = ChannelAccount.objects.filter(pk=account_id or 0).get()
        if account.is_sandbox:
            logger.info(
                "messaging: sandbox account %s, code of claim %s not sent", account, claim_id
            )
            return
        adapter_for(account.kind).send(account, to=to, text=body)
    except Exception:  # after commit: the customer can ask for a new code
        logger.exception("messaging: the code of identity claim %s could not be sent", claim_id)


def take_code_reply(*, conversation: Conversation, text: str, now: datetime, say: Say) -> bool:
    """The customer wrote six digits in a conversation waiting for a code: check it. Returns
    whether the message was the answer to a code (the bot then leaves it alone).

    Right: the claim is verified and, after commit, the two customers are merged (the customer
    who had the address survives). Wrong: one try fewer; the last wrong try, or a code past its
    time, turns the claim into a suggested match for agents. The customer is told each time.
    Called under the conversation's lock (``receive_inbound``).
    """
    match = _CODE.match(text or "")
    if match is None:
        return False
    claim = (
        IdentityClaim.objects.select_for_update()
        .filter(conversation=conversation, status=ClaimStatus.PENDING)
        .first()
    )
    if claim is None:
        return False
    limit = settings.MESSAGING_IDENTITY_CODE_MAX_ATTEMPTS
    with translation.override(conversation.account.language):
        if claim.expires_at is None or now >= claim.expires_at:
            _to_suggestion(claim, now)
            reply = _("This code has expired. An agent will check your details with you.")
        elif constant_time_compare(_hash(claim.code_salt, match.group(1)), claim.code_hash):
            claim.status, claim.resolved_at = ClaimStatus.VERIFIED, now
            claim.save(update_fields=["status", "resolved_at"])
            transaction.on_commit(partial(_merge_verified, claim_id=claim.pk, now=now))
            reply = _("Thank you, that is confirmed. We have your earlier conversations now.")
        else:
            claim.attempts += 1
            left = limit - claim.attempts
            if left <= 0:
                _to_suggestion(claim, now)
                reply = _("That code is not right. An agent will check your details with you.")
            else:
                claim.save(update_fields=["attempts"])
                reply = ngettext(
                    "That code is not right. You can try %(n)s more time.",
                    "That code is not right. You can try %(n)s more times.",
                    left,
                ) % {"n": left}
    say(conversation=conversation, text=reply, now=now)
    return True


def _to_suggestion(claim: IdentityClaim, now: datetime) -> None:
    claim.status, claim.resolved_at = ClaimStatus.SUGGESTED, now
    claim.save(update_fields=["status", "resolved_at", "attempts"])


def _merge_verified(*, claim_id: int, now: datetime) -> None:
    """The customer typed the right code: merge them into the customer who had the address."""
    claim = IdentityClaim.objects.filter(pk=claim_id, status=ClaimStatus.VERIFIED).first()
    if claim is None or claim.merge_id:
        return
    owner = resolve_customer(claim.owner)
    customer = resolve_customer(claim.customer)
    if owner.pk == customer.pk:
        return
    try:
        with transaction.atomic():
            record = apply_merge(survivor_id=owner.pk, other_id=customer.pk, actor=None, now=now)
            IdentityClaim.objects.filter(pk=claim_id).update(merge=record)
            _keep_address(owner, claim.kind, claim.value, now)
    except DomainError:
        logger.exception("messaging: verified claim %s could not be merged", claim_id)


def _keep_address(customer: Customer, kind: str, value: str, now: datetime) -> None:
    """The address as the customer gave it, on the survivor (the match may have been the same
    number on another channel)."""
    address = normalize(kind, value)
    if not CustomerIdentity.objects.filter(kind=kind, value=address.value).exists():
        CustomerIdentity.objects.create(
            customer=customer,
            kind=kind,
            value=address.value,
            match_key=address.match_key,
            created_at=now,
        )


def take_bot_answers(
    *,
    conversation: Conversation,
    before: dict[str, Any],
    after: dict[str, Any],
    now: datetime,
    say: Say,
) -> None:
    """The bot collected an e-mail or phone number (flow keys ``email``/``phone``): claim it
    for the conversation's customer. A malformed answer is left in the bot's answers only."""
    for key, kind in BOT_ADDRESS_KEYS.items():
        value = str(after.get(key) or "").strip()
        if not value or value == str(before.get(key) or "").strip():
            continue
        try:
            add_identity(
                customer=conversation.customer,
                kind=kind,
                value=value,
                actor=None,
                conversation=conversation,
                now=now,
                say=say,
            )
        except DomainError:
            logger.info(
                "messaging: bot answer %r on conversation %s is no address", key, conversation.pk
            )


# --- Suggested matches -------------------------------------------------------------------------


def suggested_matches(customer: Customer, viewer: Any) -> list[dict[str, Any]]:
    """Other customers who may be this one: a claim that was not proven (suggested), or an
    identity with the same match key (duplicates). What is shown of the other customer is its
    number and the address they share: the viewer may not see that customer's history, and
    learns nothing the address did not tell them. ``can_merge``: whether ``merge_suggested``
    would let the viewer merge."""
    rows: dict[int, dict[str, Any]] = {}
    claims = IdentityClaim.objects.filter(
        Q(customer=customer) | Q(owner=customer), status=ClaimStatus.SUGGESTED
    ).select_related("identity")
    for claim in claims:
        other = claim.owner_id if claim.customer_id == customer.pk else claim.customer_id
        rows.setdefault(other, _suggestion(other, claim.identity, claim.pk))
    keys = customer.identities.exclude(match_key=None).values("match_key")
    duplicates = (
        CustomerIdentity.objects.filter(match_key__in=keys)
        .exclude(customer=customer)
        .exclude(customer__merged_into__isnull=False)
        .order_by("pk")
    )
    for identity in duplicates[:20]:
        rows.setdefault(identity.customer_id, _suggestion(identity.customer_id, identity, None))
    suggestions = list(rows.values())
    for row in suggestions:
        row["can_merge"] = _may_merge_pair(viewer, customer.pk, row["customer_id"])
    return suggestions


def _suggestion(other_id: int, identity: CustomerIdentity, claim_id: int | None) -> dict[str, Any]:
    return {
        "customer_id": other_id,
        "claim_id": claim_id,
        "kind": identity.kind,
        "kind_label": identity.get_kind_display(),
        "value": identity.value,
    }


def _sides(customer_id: int) -> tuple[Any, Any]:
    from messaging.models import Case

    return (
        Conversation.objects.filter(customer_id=customer_id),
        Case.objects.filter(customer_id=customer_id),
    )


def _may_merge_pair(viewer: Any, one: int, other: int) -> bool:
    return may_merge(viewer, [_sides(one), _sides(other)])


def merge_suggested(
    *, customer: Customer, other_id: int, actor: User, now: datetime | None = None
) -> Any:
    """Merge a suggested match (``suggested_matches``) with one click. The customer who had
    the address first (the lower id for duplicates) survives. Same rule as any merge
    (supervisors, or the agent answering both), except that the other customer need not be in
    the actor's scope: the suggestion named it. NotFound if there is no such suggestion."""
    now = now or timezone.now()
    customer = resolve_customer(customer)
    row = next(
        (s for s in suggested_matches(customer, actor) if s["customer_id"] == other_id), None
    )
    if row is None:
        raise NotFound(_("No such suggested match."), "not_found")
    if not row["can_merge"]:
        raise Forbidden(
            _("Only a supervisor, or the agent answering both customers, may merge them."),
            "merge_not_allowed",
        )
    claim = IdentityClaim.objects.filter(pk=row["claim_id"]).first() if row["claim_id"] else None
    if claim is not None:
        survivor, gone = claim.owner_id, claim.customer_id
    else:
        survivor, gone = sorted([customer.pk, other_id])
    with transaction.atomic():
        record = apply_merge(survivor_id=survivor, other_id=gone, actor=actor, now=now)
        IdentityClaim.objects.filter(
            Q(customer_id=gone, owner_id=survivor) | Q(customer_id=survivor, owner_id=gone),
            status=ClaimStatus.SUGGESTED,
        ).update(status=ClaimStatus.MERGED, resolved_at=now, merge=record)
    return record
