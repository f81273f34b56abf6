"""Messaging services: every write to customers, conversations, messages and cases.

A conversation (and a case) follows its work item in routing's own transaction: routing calls
the hooks this module registers (``register_routing_hooks``, through ``routing.services.records``)
when the item is accepted, requeued, closed or canceled, whoever acted. Dependencies point one
way: messaging imports routing; routing knows only that some model registered hooks.

Lock order: customers (by id) -> identity -> conversation -> message. Against routing: routing's
rows (agents -> agent work -> items) first, then the conversation, both in routing's hooks and in
this module's closes (``_with_item_locked``); nothing here waits on routing's rows while holding
a conversation.

Longer than the ~600 lines a module should hold: customers and merges, conversations and their
routing hooks, outbound sends and cases share the lock order above and several private helpers
(``_with_item_locked``, ``_end``, the identity lookups). It is to become a package by concern
(customers, conversations, sends, cases), as ``routing.services`` did, in a change of its own.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from messaging import bot, dispatch, linking, timeline
from messaging.adapters import ProviderError, adapter_for
from messaging.identity import identify_or_create_customer
from messaging.merging import apply_merge, ids_of, lock_customers
from messaging.models import (
    CASE_ITEM_PRIORITY,
    OPEN_CONVERSATION,
    AccountKind,
    Author,
    Case,
    CaseOrigin,
    CasePriority,
    CaseStatus,
    CaseVerification,
    ChannelAccount,
    Conversation,
    ConversationStatus,
    Customer,
    CustomerIdentity,
    DeliveryStatus,
    Direction,
    EndedBy,
    IdentityKind,
    MergeRecord,
    Message,
)
from messaging.selectors import (
    agents_for_conversation,
    conversation_summary,
    may_merge,
    message_payload,
    opened_work_for,
    visible_customers,
    widget_message,
)
from omnirouter import realtime
from omnirouter.errors import Conflict, DomainError, Forbidden, NotFound
from presence.models import Agent
from routing import services as routing
from routing.models import (
    AgentWork,
    AgentWorkState,
    Queue,
    ServiceChannel,
    WorkItem,
    WorkItemStatus,
)
from routing.services import records

logger = logging.getLogger(__name__)

MAX_TEXT_LENGTH = 4000


# --- Customers -------------------------------------------------------------------------------


def _visitor_signer() -> signing.Signer:
    return signing.Signer(salt="messaging.webchat.visitor", sep=".")


def issue_visitor_token() -> str:
    """A new web-chat visitor token, signed by this server: the widget keeps it and sends it
    back, and only tokens we issued are accepted (a visitor cannot pick someone else's)."""
    return _visitor_signer().sign(secrets.token_urlsafe(18))


def visitor_token_valid(token: str) -> bool:
    """Whether ``token`` is one this server issued (``issue_visitor_token``)."""
    if not token or len(token) > 128:
        return False
    try:
        _visitor_signer().unsign(token)
    except signing.BadSignature:
        return False
    return True


def visitor_key(token: str) -> str:
    """The web-chat identity value for a visitor token: a digest, so that the token (the
    visitor's secret, kept in their browser) is never shown to agents."""
    return hashlib.sha256(token.encode()).hexdigest()[:40]


def _sides(customer: Customer) -> tuple[QuerySet[Conversation], QuerySet[Case]]:
    return (
        Conversation.objects.filter(customer=customer),
        Case.objects.filter(customer=customer),
    )


def merge_customers(
    *,
    survivor: Customer,
    other: Customer,
    actor: User,
    now: datetime | None = None,
) -> MergeRecord:
    """Merge ``other`` into ``survivor``: identities, conversations and cases move, so both
    histories show on the survivor; ``other`` points to the survivor from now on.

    Allowed to supervisors (and admins) for customers they can see, and to an agent holding
    accepted work on both (answering both conversations). A customer the actor cannot see is
    NotFound, as if it did not exist. Logged in a ``MergeRecord`` with the actor and exactly
    what moved; ``unmerge_customers`` undoes it.
    """
    now = now or timezone.now()
    if survivor.pk == other.pk:
        raise DomainError(_("A customer cannot be merged with itself."), "same_customer")
    if visible_customers(actor).filter(pk__in=[survivor.pk, other.pk]).count() != 2:
        raise NotFound(_("No such customer."), "not_found")
    if not may_merge(actor, [_sides(survivor), _sides(other)]):
        raise Forbidden(
            _("Only a supervisor, or the agent answering both customers, may merge them."),
            "merge_not_allowed",
        )
    return apply_merge(survivor_id=survivor.pk, other_id=other.pk, actor=actor, now=now)


def unmerge_customers(
    *,
    customer: Customer,
    actor: User,
    merge_id: int | None = None,
    now: datetime | None = None,
) -> MergeRecord:
    """Undo a merge into ``customer`` (``merge_id``, or the latest not undone): what moved goes
    back to the merged customer (identities, conversations, cases, earlier merges re-pointed),
    and so do the conversations opened since through a moved identity (they follow their
    identity) and the cases opened from those. The merged customer stands on its own again.

    Same permission as merging: a supervisor who can see the customer, or an agent holding
    accepted work on both sides. Refused while the survivor is itself merged into another
    customer (undo that first).
    """
    now = now or timezone.now()
    if not visible_customers(actor).filter(pk=customer.pk).exists():
        raise NotFound(_("No such customer."), "not_found")
    records = MergeRecord.objects.filter(survivor_id=customer.pk, undone_at__isnull=True)
    if merge_id is not None:
        records = records.filter(pk=merge_id)
    record = records.order_by("-merged_at", "-id").first()
    if record is None:
        raise NotFound(_("No merge into this customer to undo."), "no_merge")
    moved = (
        Conversation.objects.filter(pk__in=record.conversation_ids),
        Case.objects.filter(pk__in=record.case_ids),
    )
    stayed = (
        Conversation.objects.filter(customer_id=customer.pk).exclude(
            pk__in=record.conversation_ids
        ),
        Case.objects.filter(customer_id=customer.pk).exclude(pk__in=record.case_ids),
    )
    if not may_merge(actor, [moved, stayed]):
        raise Forbidden(
            _("Only a supervisor, or the agent answering both customers, may undo a merge."),
            "merge_not_allowed",
        )
    with transaction.atomic():
        locked = lock_customers(record.survivor_id, record.merged_id)
        keep, gone = locked[record.survivor_id], locked[record.merged_id]
        record = MergeRecord.objects.select_for_update().get(pk=record.pk)
        if record.undone_at is not None:
            raise Conflict(_("This merge was already undone."), "already_undone")
        if keep.merged_into_id is not None:
            raise Conflict(
                _("Customer #%(id)s was merged into #%(into)s since: undo that merge first.")
                % {"id": keep.pk, "into": keep.merged_into_id},
                "merged_since",
            )
        CustomerIdentity.objects.filter(pk__in=record.identity_ids, customer=keep).update(
            customer=gone
        )
        conversations = ids_of(
            Conversation.objects.filter(customer=keep).filter(
                Q(pk__in=record.conversation_ids) | Q(identity_id__in=record.identity_ids)
            )
        )
        Conversation.objects.filter(pk__in=conversations).update(customer=gone)
        Case.objects.filter(customer=keep).filter(
            Q(pk__in=record.case_ids) | Q(conversation_id__in=conversations)
        ).update(customer=gone)
        Customer.objects.filter(pk__in=record.redirected_customer_ids, merged_into=keep).update(
            merged_into=gone
        )
        gone.merged_into, gone.merged_at, gone.merged_by = None, None, None
        gone.save(update_fields=["merged_into", "merged_at", "merged_by"])
        if record.took_display_name and keep.display_name == gone.display_name:
            keep.display_name = ""
            keep.save(update_fields=["display_name"])
        record.undone_at, record.undone_by = now, actor
        record.save(update_fields=["undone_at", "undone_by"])
    return record


def add_customer_identity(
    *,
    customer: Customer,
    kind: str,
    value: str,
    actor: User | None,
    conversation: Conversation | None = None,
    now: datetime | None = None,
) -> linking.ClaimOutcome:
    """The customer says this phone number or e-mail is theirs: added, or proven by a code
    typed back in ``conversation``, or suggested to agents (``messaging.linking.add_identity``
    says which, and who may)."""
    return linking.add_identity(
        customer=customer,
        kind=kind,
        value=value,
        actor=actor,
        conversation=conversation,
        now=now,
        say=say_to_customer,
    )


# --- Inbound ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboundResult:
    message: Message
    created: bool  # False: a duplicate delivery of a message already stored


def receive_inbound(
    *,
    account: ChannelAccount,
    sender: str,
    text: str,
    provider_message_id: str = "",
    sender_name: str = "",
    now: datetime | None = None,
) -> InboundResult:
    """Store a customer's message once and move their conversation on.

    A provider message id seen before on this account changes nothing (providers redeliver).
    The message lands on the customer's open conversation on this account, or opens a new one
    (a reply on an ended conversation opens a new one, offered to the previous agent first).
    A conversation with the bot gets the bot's next question, or is handed to routing.
    Side effects: ``message.new`` to the agent holding the conversation; bot replies sent.
    """
    now = now or timezone.now()
    text = (text or "")[:MAX_TEXT_LENGTH]
    provider_message_id = (provider_message_id or "")[:200]
    with transaction.atomic():
        identity = identify_or_create_customer(
            kind=account.identity_kind, value=sender, name=sender_name, now=now
        )
        # Everything inbound from one address is serialised on its identity row: a duplicate
        # delivery or a burst from a new address then sees the rows the first one wrote.
        identity = CustomerIdentity.objects.select_for_update().get(pk=identity.pk)
        if provider_message_id:
            existing = Message.objects.filter(
                account=account, provider_message_id=provider_message_id
            ).first()
            if existing is not None:
                return InboundResult(existing, created=False)
        conversation = (
            Conversation.objects.select_for_update()
            .filter(OPEN_CONVERSATION, account=account, identity=identity)
            .first()
        )
        is_new = conversation is None
        if conversation is None:
            conversation = Conversation.objects.create(
                customer_id=identity.customer_id,
                identity=identity,
                account=account,
                status=ConversationStatus.BOT,
                started_at=now,
                last_activity_at=now,
            )
        message = Message.objects.create(
            conversation=conversation,
            account=account,
            direction=Direction.IN,
            author=Author.CUSTOMER,
            text=text,
            provider_message_id=provider_message_id,
            status=DeliveryStatus.RECEIVED,
            created_at=now,
        )
        conversation.last_activity_at = now
        conversation.save(update_fields=["last_activity_at"])
        _tell_agents(conversation, realtime.MESSAGE_NEW, _message_event(message, conversation))
        # Six digits may answer a code sent to prove an address (messaging.linking); any other
        # message costs no query here.
        answered_code = False
        if not is_new and linking.looks_like_code(text):
            answered_code = linking.take_code_reply(
                conversation=conversation, text=text, now=now, say=say_to_customer
            )
        if conversation.status == ConversationStatus.BOT and not answered_code:
            _run_bot(conversation, text, first=is_new, now=now)
    return InboundResult(message, created=True)


def _run_bot(conversation: Conversation, text: str, *, first: bool, now: datetime) -> None:
    account = conversation.account
    customer = conversation.customer
    with translation.override(account.language):
        try:
            if first:
                turn = bot.begin(
                    account.bot_flow, known={"name": customer.display_name}, first_text=text
                )
            else:
                turn = bot.answer(
                    account.bot_flow,
                    state=conversation.bot_state,
                    answers=conversation.bot_answers,
                    text=text,
                )
        except Exception:  # any bot failure hands off at once: a person can always help
            logger.exception("messaging: bot failed on conversation %s", conversation.pk)
            turn = bot.BotTurn(
                (bot.BotReply(_("Thank you. An agent will be with you shortly.")),),
                {"step": None, "done": True},
                dict(conversation.bot_answers),
                handoff=True,
                reason="bot_error",
            )
    for reply in turn.replies:
        shown = reply.text if account.kind == AccountKind.WEBCHAT else None
        _add_outbound(
            conversation,
            author=Author.BOT,
            text=shown or bot.render_for_text_channel(reply),
            choices=list(reply.choices),
            now=now,
        )
    before = conversation.bot_answers
    conversation.bot_state, conversation.bot_answers = turn.state, turn.answers
    name = str(turn.answers.get("name") or "").strip()
    if name and not customer.display_name:
        Customer.objects.filter(pk=customer.pk, display_name="").update(display_name=name[:200])
        customer.display_name = name[:200]
    conversation.save(update_fields=["bot_state", "bot_answers"])
    linking.take_bot_answers(
        conversation=conversation, before=before, after=turn.answers, now=now, say=say_to_customer
    )
    if turn.handoff:
        _hand_off(conversation, queue_name=turn.queue, reason=turn.reason, now=now)


def _hand_off(conversation: Conversation, *, queue_name: str, reason: str, now: datetime) -> None:
    """The conversation needs an agent: it becomes a work item on the account's channel."""
    account = conversation.account
    queue = Queue.objects.filter(name=queue_name).first() if queue_name else None
    queue = queue or account.queue
    # The same customer live on another channel with an agent who serves this queue: that agent
    # first (grouped); otherwise the agent of their last conversation (sticky). Intake's
    # preferred agent must be a member of the queue.
    grouped = timeline.live_agent_for(conversation, queue=queue)
    preferred = grouped or _previous_agent(conversation, queue, now)
    prefer_seconds = (
        settings.MESSAGING_GROUP_PREFER_SECONDS if grouped else settings.MESSAGING_STICKY_SECONDS
    )
    customer = conversation.customer
    first = conversation.messages.filter(author=Author.CUSTOMER).order_by("created_at").first()
    label = account.get_kind_display()
    # A web-chat identity is a digest: meaningless to an agent, unlike a phone number.
    anonymous = _("Web visitor") if account.kind == AccountKind.WEBCHAT else None
    who = customer.display_name or anonymous or conversation.identity.value
    # The topic as the customer picked it (the choice's label), not the flow's internal value.
    topic = bot.choice_label(account.bot_flow, "topic", conversation.bot_answers.get("topic"))
    subject = f"{label}: {who}" + (f" ({topic})" if topic else "")
    payload = {
        "conversation_id": conversation.pk,
        "customer": {"id": customer.pk, "name": customer.display_name},
        "channel": account.kind,
        "channel_label": str(label),
        "account": account.name,
        "address": conversation.identity.value,
        "bot_answers": conversation.bot_answers,
        "handoff_reason": reason,
        "first_message": first.text[:500] if first else "",
        "linked_conversation_ids": timeline.open_siblings(conversation),
    }
    if preferred is not None:
        payload["preferred_agent"] = {"id": preferred.pk, "name": str(preferred)}
    if grouped is not None:
        # The agent's console shows it as the same customer's other channel.
        payload["grouped_with_agent"] = grouped.pk
    item = routing.enqueue_work(
        queue=queue,
        channel=account.service_channel,
        subject=subject[:255],
        payload=payload,
        record=conversation,
        preferred_agent=preferred,
        preferred_for=timedelta(seconds=prefer_seconds) if preferred else None,
        now=now,
    )
    conversation.work_item = item
    conversation.status = ConversationStatus.WAITING
    conversation.save(update_fields=["work_item", "status"])
    _conversation_changed(conversation)


def _previous_agent(conversation: Conversation, queue: Queue, now: datetime) -> Agent | None:
    """The agent of the customer's last conversation, if it ended recently and they serve
    ``queue`` (sticky routing: intake's preferred agent, who must be a member)."""
    since = now - timedelta(hours=settings.MESSAGING_STICKY_LOOKBACK_HOURS)
    previous = (
        Conversation.objects.filter(
            customer_id=conversation.customer_id,
            status=ConversationStatus.ENDED,
            assigned_agent__isnull=False,
            assigned_agent__memberships__queue=queue,
            ended_at__gte=since,
        )
        .exclude(pk=conversation.pk)
        .select_related("assigned_agent__user")
        .order_by("-ended_at", "-id")
        .first()
    )
    return previous.assigned_agent if previous else None


def receive_webchat(
    *,
    account: ChannelAccount,
    visitor: str,
    text: str,
    client_id: str = "",
    now: datetime | None = None,
) -> InboundResult:
    """A web-chat visitor's message (``visitor`` is their identity value, see ``visitor_key``).
    The widget's client id makes a resend after a reconnect a no-op."""
    text = (text or "").strip()
    if not text:
        raise DomainError(_("The message is empty."), "empty")
    if len(text) > MAX_TEXT_LENGTH:
        raise DomainError(_("The message is too long."), "too_long")
    if account.kind != AccountKind.WEBCHAT or not account.active:
        raise NotFound(_("This chat is not available."), "not_found")
    client_id = re.sub(r"[^\w-]", "", client_id or "")[:64]
    return receive_inbound(
        account=account,
        sender=visitor,
        text=text,
        provider_message_id=f"webchat:{visitor[:16]}:{client_id}" if client_id else "",
        now=now,
    )


# --- Outbound --------------------------------------------------------------------------------


def send_reply(
    *, conversation_id: int, agent: Agent, text: str, now: datetime | None = None
) -> Message:
    """The agent's reply: stored queued and sent through the channel after commit.

    Only the agent who accepted the conversation's work item may reply. Side effects: the
    provider send (a Celery task, retried) or the customer's widget; ``message.new`` to the
    agent.
    """
    now = now or timezone.now()
    text = (text or "").strip()
    if not text:
        raise DomainError(_("Write a message first."), "empty")
    if len(text) > MAX_TEXT_LENGTH:
        raise DomainError(
            _("Messages are limited to %(n)s characters.") % {"n": MAX_TEXT_LENGTH}, "too_long"
        )
    with transaction.atomic():
        conversation = _lock_conversation(conversation_id)
        if not conversation.is_open:
            raise Conflict(_("This conversation has ended."), "ended")
        if opened_work_for(conversation, agent) is None:
            raise Forbidden(_("This conversation is not assigned to you."), "not_yours")
        message = _add_outbound(conversation, author=Author.AGENT, agent=agent, text=text, now=now)
        conversation.last_activity_at = now
        conversation.save(update_fields=["last_activity_at"])
    return message


def say_to_customer(*, conversation: Conversation, text: str, now: datetime) -> Message:
    """A system line to the customer in their conversation (e.g. "we sent you a code"), sent
    through its channel like any reply; agents holding it see it too."""
    return _add_outbound(conversation, author=Author.SYSTEM, text=text, now=now)


def _add_outbound(
    conversation: Conversation,
    *,
    author: str,
    text: str,
    now: datetime,
    agent: Agent | None = None,
    choices: list[str] | None = None,
) -> Message:
    account = conversation.account
    webchat = account.kind == AccountKind.WEBCHAT
    message = Message.objects.create(
        conversation=conversation,
        account=account,
        direction=Direction.OUT,
        author=author,
        agent=agent,
        text=text,
        choices=choices or [],
        # Web chat is our own socket: handing it to the channel layer is the send.
        status=DeliveryStatus.SENT if webchat else DeliveryStatus.QUEUED,
        sent_at=now if webchat else None,
        next_attempt_at=None if webchat else now,
        created_at=now,
    )
    if webchat:
        realtime.publish(
            realtime.webchat_group(conversation.identity.value),
            realtime.MESSAGE_NEW,
            widget_message(message),
        )
    else:
        dispatch.queue_send(message.pk)
    _tell_agents(conversation, realtime.MESSAGE_NEW, _message_event(message, conversation))
    return message


@dataclass(frozen=True)
class SendOutcome:
    status: str  # sent, failed, retry, skipped
    retry_in: float | None = None


def retry_delay_seconds(attempt: int) -> float:
    """Exponential backoff: the first retry after MESSAGING_SEND_BACKOFF_SECONDS, then doubled."""
    return settings.MESSAGING_SEND_BACKOFF_SECONDS * 2 ** (attempt - 1)


def deliver_outbound(*, message_id: int, now: datetime | None = None) -> SendOutcome:
    """Send one queued outbound message through its provider (idempotent).

    The message row stays locked during the provider call, so two workers never send it twice;
    a message that is not queued any more (sent, failed) is left alone. Transient failures (5xx,
    429, network) are retried until MESSAGING_SEND_MAX_ATTEMPTS; then, or on a permanent error,
    the message is failed with the provider's error. Side effect: ``message.status`` to agents.
    """
    with transaction.atomic():
        message = (
            Message.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("account", "conversation__identity")
            .filter(pk=message_id, direction=Direction.OUT)
            .first()
        )
        if message is None or message.status != DeliveryStatus.QUEUED:
            return SendOutcome("skipped")
        now = now or timezone.now()
        account = message.account
        attempt = message.attempts + 1
        message.attempts, message.last_attempt_at = attempt, now
        fields = ["attempts", "last_attempt_at", "status", "error", "next_attempt_at"]
        try:
            provider_id = _send_through_provider(message)
        except ProviderError as exc:
            message.error = exc.message[:1000]
            if exc.transient and attempt < settings.MESSAGING_SEND_MAX_ATTEMPTS:
                delay = retry_delay_seconds(attempt)
                message.next_attempt_at = now + timedelta(seconds=delay)
                message.save(update_fields=fields)
                _tell_agents(message.conversation, realtime.MESSAGE_STATUS, _status_event(message))
                return SendOutcome("retry", retry_in=delay)
            message.status, message.next_attempt_at = DeliveryStatus.FAILED, None
            message.save(update_fields=fields)
            _tell_agents(message.conversation, realtime.MESSAGE_STATUS, _status_event(message))
            return SendOutcome("failed")
        message.status, message.error, message.next_attempt_at = DeliveryStatus.SENT, "", None
        message.provider_message_id, message.sent_at = provider_id, now
        message.save(update_fields=[*fields, "provider_message_id", "sent_at"])
        _tell_agents(message.conversation, realtime.MESSAGE_STATUS, _status_event(message))
        logger.debug("messaging: sent message %s on %s as %s", message.pk, account, provider_id)
        return SendOutcome("sent")


def _send_through_provider(message: Message) -> str:
    account = message.account
    if account.is_sandbox:
        return f"sandbox-{uuid.uuid4().hex}"
    callback = ""
    if account.kind == AccountKind.SMS and settings.MESSAGING_PUBLIC_BASE_URL:
        callback = f"{settings.MESSAGING_PUBLIC_BASE_URL.rstrip('/')}/webhooks/sms/{account.pk}/"
    return adapter_for(account.kind).send(
        account,
        to=message.conversation.identity.value,
        text=message.text,
        status_callback=callback,
    )


# Where a delivery status may go from each status: never backwards (callbacks arrive out of
# order), and nothing after delivered or failed.
_NEXT_STATUS: dict[str, set[str]] = {
    DeliveryStatus.QUEUED: {DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.FAILED},
    DeliveryStatus.SENT: {DeliveryStatus.DELIVERED, DeliveryStatus.FAILED},
}


def update_delivery_status(
    *,
    account: ChannelAccount,
    provider_message_id: str,
    status: str,
    error: str = "",
    now: datetime | None = None,
) -> Message | None:
    """A provider's status callback. Unknown ids and backward moves change nothing."""
    now = now or timezone.now()
    with transaction.atomic():
        message = (
            Message.objects.select_for_update(of=("self",))
            .select_related("conversation")
            .filter(
                account=account,
                provider_message_id=provider_message_id,
                direction=Direction.OUT,
            )
            .first()
        )
        if message is None or status not in _NEXT_STATUS.get(message.status, set()):
            return None
        message.status = status
        fields = ["status"]
        if status == DeliveryStatus.DELIVERED:
            message.delivered_at = now
            fields.append("delivered_at")
        if status == DeliveryStatus.FAILED:
            message.error = error[:1000] or _("The provider could not deliver the message.")
            fields.append("error")
        message.save(update_fields=fields)
        _tell_agents(message.conversation, realtime.MESSAGE_STATUS, _status_event(message))
    return message


def mark_webchat_delivered(
    *, account: ChannelAccount, visitor: str, message_ids: list[int], now: datetime | None = None
) -> int:
    """The visitor's widget showed these messages: they are delivered."""
    now = now or timezone.now()
    ids = [int(i) for i in message_ids if str(i).isdigit()][:100]
    with transaction.atomic():
        messages = list(
            Message.objects.select_related("conversation").filter(
                pk__in=ids,
                account=account,
                conversation__identity__value=visitor,
                conversation__identity__kind=IdentityKind.WEBCHAT,
                direction=Direction.OUT,
                status=DeliveryStatus.SENT,
            )
        )
        Message.objects.filter(pk__in=[m.pk for m in messages]).update(
            status=DeliveryStatus.DELIVERED, delivered_at=now
        )
        for message in messages:
            message.status, message.delivered_at = DeliveryStatus.DELIVERED, now
            _tell_agents(message.conversation, realtime.MESSAGE_STATUS, _status_event(message))
    return len(messages)


# --- Conversations and routing --------------------------------------------------------------
#
# A conversation's state follows its work item in routing's own transaction: routing calls the
# hooks below (``routing.services.records``) when the item is accepted, requeued, closed or
# canceled, whoever acted (this app, the generic console, the REST API, a supervisor). When a hook
# runs, routing's rows are locked; the hook locks the conversation after them. Messaging's own
# closes take routing's locks first for the same reason (``_with_item_locked``).


def register_routing_hooks() -> None:
    """Tell routing what its work changes mean for conversations and cases (from ``ready``)."""
    records.register(
        Conversation,
        on_accepted=_conversation_accepted,
        on_requeued=_conversation_requeued,
        on_closed=_conversation_closed,
        on_canceled=_conversation_canceled,
    )
    records.register(Case, on_accepted=_case_accepted, on_closed=_case_closed)
    records.register_facts(Conversation, _conversation_facts)
    records.register_facts(Case, _case_facts)


def customer_facts(customer_id: int) -> dict[str, Any]:
    """What classification rules may test of a customer (``customer.*``): name, the kinds of
    address we know them by, how many conversations and cases they have had."""
    customer = Customer.objects.filter(pk=customer_id).values("id", "display_name").first()
    if customer is None:
        return {}
    kinds = sorted(
        set(CustomerIdentity.objects.filter(customer_id=customer_id).values_list("kind", flat=True))
    )
    return {
        "id": customer["id"],
        "name": customer["display_name"],
        "identities": kinds,
        "conversations": Conversation.objects.filter(customer_id=customer_id).count(),
        "cases": Case.objects.filter(customer_id=customer_id).count(),
    }


def _conversation_facts(record_id: str) -> dict[str, Any]:
    row = (
        Conversation.objects.filter(pk=int(record_id))
        .values("customer_id", "account__language")
        .first()
    )
    if row is None:
        return {}
    return {"customer": customer_facts(row["customer_id"]), "language": row["account__language"]}


def _case_facts(record_id: str) -> dict[str, Any]:
    customer_id = (
        Case.objects.filter(pk=int(record_id)).values_list("customer_id", flat=True).first()
    )
    return {"customer": customer_facts(customer_id)} if customer_id is not None else {}


def _record_conversation(change: records.ItemChange) -> Conversation | None:
    """The open conversation behind the item, locked (routing's rows are locked already)."""
    conversation = (
        Conversation.objects.select_for_update(of=("self",))
        .select_related("account", "identity", "customer", "work_item")
        .filter(pk=int(change.record_id), work_item_id=change.item_id)
        .first()
    )
    return conversation if conversation is not None and conversation.is_open else None


def _conversation_accepted(change: records.ItemChange) -> None:
    """Accepted: the conversation is active with that agent (web chat: "X has joined")."""
    conversation = _record_conversation(change)
    if conversation is None or change.agent_id is None:
        return
    agent = Agent.objects.select_related("user").get(pk=change.agent_id)
    _activate(conversation, agent, now=change.now)


def _conversation_requeued(change: records.ItemChange) -> None:
    """Transferred: the conversation waits for an agent again."""
    conversation = _record_conversation(change)
    if conversation is None or conversation.status == ConversationStatus.WAITING:
        return
    conversation.status = ConversationStatus.WAITING
    conversation.save(update_fields=["status"])
    _conversation_changed(conversation)


def _conversation_closed(change: records.ItemChange) -> None:
    """The agent closed the item: the conversation ends, by the agent."""
    conversation = _record_conversation(change)
    if conversation is None:
        return
    conversation.assigned_agent_id = change.agent_id or conversation.assigned_agent_id
    _end(conversation, by=EndedBy.AGENT, now=change.now)


def _conversation_canceled(change: records.ItemChange) -> None:
    """The item was withdrawn before anyone took it: the conversation ends, by the system."""
    conversation = _record_conversation(change)
    if conversation is not None:
        _end(conversation, by=EndedBy.SYSTEM, now=change.now)


def _case_accepted(change: records.ItemChange) -> None:
    """A new case whose item an agent accepted is open."""
    Case.objects.filter(pk=int(change.record_id), status=CaseStatus.NEW).update(
        status=CaseStatus.OPEN, updated_at=change.now
    )


def _case_closed(change: records.ItemChange) -> None:
    """A case whose item was closed is closed, unless it waits on the customer."""
    Case.objects.filter(pk=int(change.record_id)).exclude(
        status__in=[CaseStatus.CLOSED, CaseStatus.WAITING]
    ).update(status=CaseStatus.CLOSED, closed_at=change.now, updated_at=change.now)


class _ItemChanged(Exception):
    """The conversation got a work item between the unlocked read and the locks."""


_T = TypeVar("_T")


def _with_item_locked(
    conversation_id: int,
    action: Callable[[Conversation, WorkItem | None, AgentWork | None], _T],
) -> _T:
    """Run ``action`` in one transaction that holds routing's locks on the conversation's item
    (agent, agent work, item) and then the conversation's lock: the order routing's hooks take
    them in, so a close here and an accept through routing never wait on each other in a cycle.
    ``action`` gets the locked conversation, its item and the item's live work (if any)."""
    for _attempt in range(3):
        item_id = (
            Conversation.objects.filter(pk=conversation_id)
            .values_list("work_item_id", flat=True)
            .first()
        )
        try:
            with transaction.atomic():
                item, live = records.lock_item_for_record(item_id) if item_id else (None, None)
                conversation = _lock_conversation(conversation_id)
                if conversation.work_item_id != item_id:
                    raise _ItemChanged
                return action(conversation, item, live)
        except (records.LiveWorkMoved, _ItemChanged):
            continue
    raise Conflict(_("This conversation kept changing while this ran; try again."), "busy")


def close_conversation(
    *,
    conversation_id: int,
    by: str,
    agent: Agent | None = None,
    note: str = "",
    now: datetime | None = None,
) -> Conversation:
    """End a conversation (``by``: agent, customer, timeout, system).

    By the agent: only the agent holding it; their routing work is closed, which ends the
    conversation (routing's ``on_closed`` hook). By anyone else: the conversation ends, then a
    waiting item is canceled, an accepted one closed on the agent's behalf (their console shows
    it closed and the capacity is freed). Side effect: ``conversation.changed``.
    """
    now = now or timezone.now()
    if by not in EndedBy.values:
        raise DomainError(f"Unknown closer {by!r}.", "by")

    def close(
        conversation: Conversation, item: WorkItem | None, live: AgentWork | None
    ) -> Conversation:
        if not conversation.is_open:
            raise Conflict(_("This conversation has already ended."), "ended")
        if by != EndedBy.AGENT:
            _end_and_release(conversation, item, live, by=by, note=note, now=now)
            return conversation
        if agent is None:
            raise Forbidden(_("Only the agent holding the conversation can close it."), "agent")
        if live is None or live.agent_id != agent.pk or live.state != AgentWorkState.OPENED:
            raise Forbidden(_("This conversation is not assigned to you."), "not_yours")
        routing.close_work(work_id=live.pk, agent=agent, note=note, now=now)
        conversation.refresh_from_db()
        return conversation

    return _with_item_locked(conversation_id, close)


def _end_and_release(
    conversation: Conversation,
    item: WorkItem | None,
    live: AgentWork | None,
    *,
    by: str,
    note: str,
    now: datetime,
) -> None:
    """End the conversation, then take its item out of routing: close the accepted work on the
    agent's behalf, or cancel the item if it still waits. Ended first, routing's hooks then find
    nothing left to do. Routing's locks on the item are held (``_with_item_locked``)."""
    accepted = live if live is not None and live.state == AgentWorkState.OPENED else None
    if accepted is not None and conversation.assigned_agent_id is None:
        conversation.assigned_agent_id = accepted.agent_id
    _end(conversation, by=by, now=now)
    note = note or _("Conversation ended.")
    if accepted is not None:
        routing.close_work(work_id=accepted.pk, agent=accepted.agent, note=note, now=now)
    elif item is not None and item.status in (WorkItemStatus.WAITING, WorkItemStatus.OFFERED):
        routing.cancel_work_item(item_id=item.pk, now=now)


def close_webchat_by_customer(
    *, account: ChannelAccount, visitor: str, now: datetime | None = None
) -> Conversation | None:
    """The visitor pressed "End chat" in the widget."""
    conversation = Conversation.objects.filter(
        OPEN_CONVERSATION,
        account=account,
        identity__kind=IdentityKind.WEBCHAT,
        identity__value=visitor,
    ).first()
    if conversation is None:
        return None
    try:
        return close_conversation(conversation_id=conversation.pk, by=EndedBy.CUSTOMER, now=now)
    except Conflict:
        return None


def end_idle_conversations(*, now: datetime | None = None, limit: int = 200) -> int:
    """End conversations nobody wrote in for MESSAGING_INACTIVITY_MINUTES."""
    now = now or timezone.now()
    cutoff = now - timedelta(minutes=settings.MESSAGING_INACTIVITY_MINUTES)
    ids = list(
        Conversation.objects.filter(OPEN_CONVERSATION, last_activity_at__lt=cutoff)
        .order_by("last_activity_at")
        .values_list("pk", flat=True)[:limit]
    )

    def end_if_idle(
        conversation: Conversation, item: WorkItem | None, live: AgentWork | None
    ) -> bool:
        if not conversation.is_open or conversation.last_activity_at >= cutoff:
            return False  # a message came in meanwhile, or someone else ended it
        _end_and_release(
            conversation, item, live, by=EndedBy.TIMEOUT, note=_("Ended after inactivity."), now=now
        )
        return True

    ended = 0
    for conversation_id in ids:
        ended += _with_item_locked(conversation_id, end_if_idle)
    return ended


def signal_typing(*, conversation_id: int, agent: Agent | None = None, visitor: str = "") -> None:
    """Someone is typing: the agent (shown to the customer's widget) or the web-chat visitor
    (shown to the agent). Nothing is stored."""
    conversation = (
        Conversation.objects.select_related("identity").filter(pk=conversation_id).first()
    )
    if conversation is None or not conversation.is_open:
        return
    if agent is not None:
        if opened_work_for(conversation, agent) is None:
            return
        if conversation.account.kind == AccountKind.WEBCHAT:
            realtime.publish(
                realtime.webchat_group(conversation.identity.value),
                realtime.TYPING,
                {"conversation_id": conversation.pk, "author": Author.AGENT},
            )
    elif visitor and conversation.identity.value == visitor:
        _tell_agents(
            conversation,
            realtime.TYPING,
            {"conversation_id": conversation.pk, "author": Author.CUSTOMER},
        )


def _activate(conversation: Conversation, agent: Agent, *, now: datetime) -> None:
    conversation.status = ConversationStatus.ACTIVE
    conversation.assigned_agent = agent
    conversation.save(update_fields=["status", "assigned_agent"])
    if conversation.account.kind == AccountKind.WEBCHAT:
        with translation.override(conversation.account.language):
            first = agent.user.first_name or agent.user.get_username()
            text = _("%(name)s has joined the chat.") % {"name": first}
        _add_outbound(conversation, author=Author.SYSTEM, text=text, now=now)
    _conversation_changed(conversation)


def _end(conversation: Conversation, *, by: str, now: datetime) -> None:
    conversation.status = ConversationStatus.ENDED
    conversation.ended_at, conversation.ended_by = now, by
    conversation.save(update_fields=["status", "ended_at", "ended_by", "assigned_agent"])
    if conversation.account.kind == AccountKind.WEBCHAT:
        with translation.override(conversation.account.language):
            text = _("This chat has ended. Write again any time.")
        _add_outbound(conversation, author=Author.SYSTEM, text=text, now=now)
    _conversation_changed(conversation)


def _lock_conversation(conversation_id: int) -> Conversation:
    conversation = (
        Conversation.objects.select_for_update(of=("self",))
        .select_related("account", "identity", "customer", "work_item")
        .filter(pk=conversation_id)
        .first()
    )
    if conversation is None:
        raise NotFound(_("No conversation %(id)s.") % {"id": conversation_id}, "not_found")
    return conversation


# --- Cases -----------------------------------------------------------------------------------


def open_case(
    *,
    subject: str,
    customer: Customer,
    origin: str,
    description: str = "",
    priority: str = CasePriority.NORMAL,
    conversation: Conversation | None = None,
    opened_by: User | None = None,
    queue: Queue | None = None,
    verification: str = CaseVerification.NOT_NEEDED,
    now: datetime | None = None,
) -> Case:
    """Open a case and route it: a work item on the case channel (MESSAGING_CASE_CHANNEL) in
    ``queue`` or MESSAGING_CASE_QUEUE, its priority from the case's. A case whose requester is
    not verified says so in its item's payload (``unverified``), which the console shows."""
    now = now or timezone.now()
    subject = (subject or "").strip()
    if not subject:
        raise DomainError(_("A case needs a subject."), "subject")
    if len(subject) > 200:
        raise DomainError(_("The subject is limited to 200 characters."), "subject")
    if priority not in CasePriority.values:
        raise DomainError(
            _("Priority must be one of: %(values)s.") % {"values": ", ".join(CasePriority.values)},
            "priority",
        )
    if origin not in CaseOrigin.values:
        raise DomainError(_("Unknown channel of origin %(o)r.") % {"o": origin}, "origin")
    customer = Customer.objects.get(pk=customer.pk)
    if customer.merged_into_id:
        from messaging.selectors import resolve_customer

        customer = resolve_customer(customer)
    queue = queue or Queue.objects.filter(name=settings.MESSAGING_CASE_QUEUE).first()
    channel = ServiceChannel.objects.filter(key=settings.MESSAGING_CASE_CHANNEL).first()
    if queue is None or channel is None:
        raise DomainError(
            _("Cases cannot be routed: no queue %(q)r or service channel %(c)r is configured.")
            % {"q": settings.MESSAGING_CASE_QUEUE, "c": settings.MESSAGING_CASE_CHANNEL},
            "not_configured",
        )
    with transaction.atomic():
        case = Case.objects.create(
            subject=subject,
            description=(description or "").strip()[:10000],
            priority=priority,
            customer=customer,
            origin=origin,
            conversation=conversation,
            opened_by=opened_by if opened_by is not None and opened_by.is_authenticated else None,
            verification=verification,
            created_at=now,
            updated_at=now,
        )
        item = routing.enqueue_work(
            queue=queue,
            channel=channel,
            subject=f"#{case.pk} {subject}"[:255],
            priority=CASE_ITEM_PRIORITY[CasePriority(priority)],
            payload={
                "case_id": case.pk,
                "customer": {"id": customer.pk, "name": customer.display_name},
                "origin": origin,
                "description": case.description[:500],
                "conversation_id": conversation.pk if conversation else None,
                "unverified": verification == CaseVerification.PENDING,
            },
            record=case,
            # Not ``created_by=opened_by``: intake clients may read the items they create
            # (routing.selectors.visible_work_items) and this payload names the customer. The
            # case keeps who opened it.
            now=now,
        )
        case.work_item = item
        case.save(update_fields=["work_item"])
    return case


def open_case_for_identity(
    *,
    kind: str,
    value: str,
    name: str = "",
    subject: str,
    description: str = "",
    priority: str = CasePriority.NORMAL,
    origin: str = CaseOrigin.API,
    opened_by: User | None = None,
    now: datetime | None = None,
) -> Case:
    """Open a case for whoever has this address (phone, e-mail, channel id): matched, or a new
    customer made for it. How intake clients attach work to customers: never by customer id."""
    with transaction.atomic():  # a refused case leaves no new customer behind
        identity = identify_or_create_customer(kind=kind, value=value, name=name, now=now)
        return open_case(
            subject=subject,
            description=description,
            priority=priority,
            origin=origin,
            customer=identity.customer,
            opened_by=opened_by,
            now=now,
        )


def open_case_from_conversation(
    *,
    conversation_id: int,
    agent: Agent,
    subject: str,
    description: str = "",
    priority: str = CasePriority.NORMAL,
    now: datetime | None = None,
) -> Case:
    """An agent turns (part of) a conversation they hold into a case for follow-up."""
    conversation = (
        Conversation.objects.select_related("account", "customer")
        .filter(pk=conversation_id)
        .first()
    )
    if conversation is None:
        raise NotFound(_("No conversation %(id)s.") % {"id": conversation_id}, "not_found")
    if conversation.assigned_agent_id != agent.pk and opened_work_for(conversation, agent) is None:
        raise Forbidden(_("This conversation is not assigned to you."), "not_yours")
    return open_case(
        subject=subject,
        description=description,
        priority=priority,
        customer=conversation.customer,
        origin=conversation.account.kind,
        conversation=conversation,
        opened_by=agent.user,
        now=now,
    )


def open_self_service_case(
    *,
    name: str,
    email: str,
    subject: str,
    description: str,
    link_base: str,
    now: datetime | None = None,
) -> Case:
    """A customer opens a case on the help page; their e-mail finds or makes their record.

    Anyone can type any address, so the case is unverified until the sender follows the link
    mailed to that address (``confirm_case_requester``); agents see it flagged until then. A new
    address is treated the same: its record was made by this very request, but the page, the
    e-mail and the flag then never differ between known and unknown addresses, and whoever
    types another person's address first does not get a trusted case on their record. Side
    effect, after commit: the confirmation e-mail (a failure is logged, the case stays).
    """
    now = now or timezone.now()
    identity = identify_or_create_customer(kind=IdentityKind.EMAIL, value=email, name=name, now=now)
    with transaction.atomic():
        case = open_case(
            subject=subject,
            description=description,
            customer=identity.customer,
            origin=CaseOrigin.WEB,
            verification=CaseVerification.PENDING,
            now=now,
        )
        # Signed, not stored: the link proves the mailbox; its age is checked against ``now``.
        token = signing.dumps(
            {"case": case.pk, "email": identity.value, "at": int(now.timestamp())},
            salt=CONFIRM_SALT,
        )
        link = f"{link_base.rstrip('/')}{reverse('help-confirm', args=[token])}"
        transaction.on_commit(
            partial(_send_confirmation, case_id=case.pk, address=identity.value, link=link)
        )
    return case


CONFIRM_SALT = "messaging.case-requester"


def _send_confirmation(*, case_id: int, address: str, link: str) -> None:
    hours = settings.MESSAGING_CASE_CONFIRM_MAX_AGE_SECONDS // 3600
    body = _(
        "We received a request #%(id)s sent with this e-mail address.\n\n"
        "If it was you, confirm it here (the link works for %(hours)s hours):\n%(link)s\n\n"
        "If it was not you, ignore this message: the request stays marked as unconfirmed."
    ) % {"id": case_id, "hours": hours, "link": link}
    try:
        send_mail(
            _("Confirm your request #%(id)s") % {"id": case_id},
            body,
            settings.DEFAULT_FROM_EMAIL,
            [address],
        )
    except Exception:  # after commit: the case is stored, the sender can ask again
        logger.exception("messaging: confirmation e-mail for case %s failed", case_id)


def confirm_case_requester(*, token: str, now: datetime | None = None) -> Case:
    """The sender followed the link mailed to the case's address: the case is verified (its
    item's payload too, so consoles stop flagging it). Idempotent; a bad or expired link, or one
    for an address the customer no longer has (an undone merge), is refused."""
    now = now or timezone.now()
    try:
        data = signing.loads(token, salt=CONFIRM_SALT)
    except signing.BadSignature as exc:
        raise DomainError(_("This link is invalid or has expired."), "bad_link") from exc
    age = now.timestamp() - float(data.get("at", 0))
    if age > settings.MESSAGING_CASE_CONFIRM_MAX_AGE_SECONDS:
        raise DomainError(_("This link is invalid or has expired."), "bad_link")
    with transaction.atomic():
        case = Case.objects.select_for_update().filter(pk=data.get("case")).first()
        if (
            case is None
            or not CustomerIdentity.objects.filter(
                customer_id=case.customer_id, kind=IdentityKind.EMAIL, value=data.get("email")
            ).exists()
        ):
            raise DomainError(_("This link is invalid or has expired."), "bad_link")
        if case.verification == CaseVerification.VERIFIED:
            return case
        case.verification, case.verified_at, case.updated_at = CaseVerification.VERIFIED, now, now
        case.save(update_fields=["verification", "verified_at", "updated_at"])
        if case.work_item_id:
            # Lock order: the case, then its item (messaging before routing rows).
            item = WorkItem.objects.select_for_update().get(pk=case.work_item_id)
            item.payload = {**item.payload, "unverified": False}
            item.save(update_fields=["payload"])
    return case


def set_case_status(
    *, case_id: int, status: str, actor: User | None = None, now: datetime | None = None
) -> Case:
    now = now or timezone.now()
    if status not in CaseStatus.values:
        raise DomainError(_("Unknown case status %(s)r.") % {"s": status}, "status")
    with transaction.atomic():
        case = Case.objects.select_for_update().filter(pk=case_id).first()
        if case is None:
            raise NotFound(_("No case %(id)s.") % {"id": case_id}, "not_found")
        case.status, case.updated_at = status, now
        case.closed_at = now if status == CaseStatus.CLOSED else None
        case.save(update_fields=["status", "updated_at", "closed_at"])
    return case


# --- Maintenance -----------------------------------------------------------------------------


def deliver_due_outbound(*, now: datetime | None = None, limit: int = 100) -> int:
    """Send the queued outbound messages whose attempt is due (first tries and retries), oldest
    first: the embedded run's sender (Celery sends each message as its own task instead).
    Returns how many were sent or failed for good (retries scheduled later are not counted)."""
    now = now or timezone.now()
    ids = list(
        Message.objects.filter(
            status=DeliveryStatus.QUEUED, direction=Direction.OUT, next_attempt_at__lte=now
        )
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    done = 0
    for message_id in ids:
        outcome = deliver_outbound(message_id=message_id, now=now)
        done += outcome.status in ("sent", "failed")
    return done


def redrive_outbound(*, now: datetime | None = None, grace_seconds: int = 60) -> int:
    """Re-queue sends whose retry or first attempt was lost (a worker or broker restart)."""
    now = now or timezone.now()
    ids = list(
        Message.objects.filter(
            status=DeliveryStatus.QUEUED,
            direction=Direction.OUT,
            next_attempt_at__lte=now - timedelta(seconds=grace_seconds),
        ).values_list("pk", flat=True)[:500]
    )
    for message_id in ids:
        dispatch.queue_send(message_id)
    return len(ids)


def run_maintenance(*, now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    return {
        "idle_ended": end_idle_conversations(now=now),
        "redriven": redrive_outbound(now=now),
    }


# --- Events ----------------------------------------------------------------------------------


def _message_event(message: Message, conversation: Conversation) -> dict[str, Any]:
    return {
        "conversation_id": conversation.pk,
        "message": message_payload(message, conversation.customer.display_name),
    }


def _status_event(message: Message) -> dict[str, Any]:
    return {
        "conversation_id": message.conversation_id,
        "message_id": message.pk,
        "status": message.status,
        "error": message.error,
    }


def _tell_agents(conversation: Conversation, event: str, payload: dict[str, Any]) -> None:
    realtime.publish_many(
        [
            (realtime.agent_group(agent_id), event, payload)
            for agent_id in agents_for_conversation(conversation)
        ]
    )


def _conversation_changed(conversation: Conversation) -> None:
    _tell_agents(conversation, realtime.CONVERSATION_CHANGED, conversation_summary(conversation))
    if conversation.account.kind == AccountKind.WEBCHAT:
        realtime.publish(
            realtime.webchat_group(conversation.identity.value),
            realtime.CONVERSATION_CHANGED,
            {"conversation_id": conversation.pk, "status": conversation.status},
        )
