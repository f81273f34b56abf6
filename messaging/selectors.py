"""Reads of messaging state: payloads for consoles, the API, the widget and the customer record."""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.db.models.functions import Cast
from django.utils.translation import gettext as _

from messaging.models import (
    Author,
    Case,
    CaseVerification,
    Conversation,
    Customer,
    CustomerIdentity,
    MergeRecord,
    Message,
    QuickReply,
)
from omnirouter import roles
from omnirouter.errors import NotFound
from presence.models import Agent
from routing.models import LIVE_STATES, AgentWork, AgentWorkState, WorkItem
from routing.selectors import supervised_queues

# --- Who sees what -----------------------------------------------------------------------------
#
# One rule for every read of customers, conversations, transcripts and cases (API, the agent's
# conversation socket, the customer page, the console's history panel):
# - admins see everything;
# - an agent sees the records of work items they were ever offered or given (any AgentWork row)
#   and of items in the queues they are a member of;
# - a supervisor sees the records of items in the queues they supervise, or that passed through
#   them (an AgentWork row in that queue, e.g. before a transfer);
# - a conversation or case is visible when one of its work items is (the item's record); a case
#   also when the conversation it was opened from is; a customer when one of their conversations
#   or cases is, or a work item whose record is the customer;
# - anyone else (intake clients, plain users) sees nothing.
# Out-of-scope ids answer 404, as if they did not exist.


def _items_in_scope(user: Any) -> QuerySet[WorkItem] | None:
    """Work items whose records the user may read; None means every item (admins)."""
    if roles.is_admin(user):
        return None
    visible = Q(pk__in=[])
    agent = roles.agent_of(user)
    if agent is not None:
        held = AgentWork.objects.filter(item=OuterRef("pk"), agent=agent)
        visible |= Q(Exists(held)) | Q(queue__in=agent.queues.values("pk"))
    if roles.in_group(user, roles.SUPERVISOR):
        queues = supervised_queues(user).values("pk")
        passed = AgentWork.objects.filter(item=OuterRef("pk"), queue__in=queues)
        visible |= Q(queue__in=queues) | Q(Exists(passed))
    return WorkItem.objects.filter(visible)


def _record_of(items: QuerySet[WorkItem], model: type[models.Model]) -> Exists:
    """Some item of ``items`` has the outer row as its record (indexed on record type and id)."""
    return Exists(
        items.filter(
            record_type=ContentType.objects.get_for_model(model),
            record_id=Cast(OuterRef("pk"), models.CharField()),
        )
    )


def visible_conversations(user: Any) -> QuerySet[Conversation]:
    items = _items_in_scope(user)
    if items is None:
        return Conversation.objects.all()
    return Conversation.objects.filter(_record_of(items, Conversation))


def visible_cases(user: Any) -> QuerySet[Case]:
    items = _items_in_scope(user)
    if items is None:
        return Case.objects.all()
    from_conversation = visible_conversations(user).filter(pk=OuterRef("conversation_id"))
    return Case.objects.filter(Q(_record_of(items, Case)) | Q(Exists(from_conversation)))


def visible_conversation(user: Any, conversation_id: int) -> Conversation:
    """The conversation, if the user may see it; NotFound otherwise (existence not disclosed)."""
    conversation = (
        visible_conversations(user)
        .select_related("account", "identity", "customer", "assigned_agent")
        .filter(pk=conversation_id)
        .first()
    )
    if conversation is None:
        raise NotFound(_("No conversation %(id)s.") % {"id": conversation_id}, "not_found")
    return conversation


def visible_customer(user: Any, customer_id: int) -> Customer:
    """The customer (the survivor, for a merged id), if the user may see them; NotFound
    otherwise."""
    customer = Customer.objects.filter(pk=customer_id).first()
    if customer is not None:
        customer = resolve_customer(customer)
        if visible_customers(user).filter(pk=customer.pk).exists():
            return customer
    raise NotFound(_("No customer %(id)s.") % {"id": customer_id}, "not_found")


def visible_customers(user: Any) -> QuerySet[Customer]:
    items = _items_in_scope(user)
    if items is None:
        return Customer.objects.all()
    conversations = visible_conversations(user).filter(customer=OuterRef("pk"))
    cases = visible_cases(user).filter(customer=OuterRef("pk"))
    return Customer.objects.filter(
        Q(Exists(conversations)) | Q(Exists(cases)) | Q(_record_of(items, Customer))
    )


def holds_work_on(
    agent: Agent, *, conversations: QuerySet[Conversation], cases: QuerySet[Case]
) -> bool:
    """The agent holds accepted work on one of these conversations or cases right now."""
    held = WorkItem.objects.filter(
        Exists(
            AgentWork.objects.filter(item=OuterRef("pk"), agent=agent, state=AgentWorkState.OPENED)
        )
    )
    return (
        conversations.filter(_record_of(held, Conversation)).exists()
        or cases.filter(_record_of(held, Case)).exists()
    )


def resolve_customer(customer: Customer) -> Customer:
    """The surviving customer a (possibly merged) customer now lives on."""
    seen = set()
    while customer.merged_into_id is not None and customer.pk not in seen:
        seen.add(customer.pk)
        customer = Customer.objects.get(pk=customer.merged_into_id)
    return customer


def author_name(message: Message, customer_name: str = "") -> str:
    if message.author == Author.AGENT:
        return str(message.agent) if message.agent_id else _("Agent")
    if message.author == Author.BOT:
        return _("Bot")
    if message.author == Author.SYSTEM:
        return _("System")
    return customer_name or _("Customer")


def message_payload(message: Message, customer_name: str = "") -> dict[str, Any]:
    return {
        "id": message.pk,
        "conversation_id": message.conversation_id,
        "direction": message.direction,
        "author": message.author,
        "author_name": author_name(message, customer_name),
        "text": message.text,
        "status": message.status,
        "error": message.error,
        "choices": list(message.choices or []),
        "created_at": message.created_at.isoformat(),
        "sent_at": message.sent_at.isoformat() if message.sent_at else None,
        "delivered_at": message.delivered_at.isoformat() if message.delivered_at else None,
    }


def conversation_summary(conversation: Conversation) -> dict[str, Any]:
    account = conversation.account
    return {
        "id": conversation.pk,
        "status": conversation.status,
        "status_label": conversation.get_status_display(),
        "customer_id": conversation.customer_id,
        "channel": account.kind,
        "channel_label": account.get_kind_display(),
        "account": account.name,
        "address": conversation.identity.value,
        "started_at": conversation.started_at.isoformat(),
        "ended_at": conversation.ended_at.isoformat() if conversation.ended_at else None,
        "ended_by": conversation.ended_by,
        "last_activity_at": conversation.last_activity_at.isoformat(),
        "agent": str(conversation.assigned_agent) if conversation.assigned_agent_id else None,
        "agent_id": conversation.assigned_agent_id,
        "bot_answers": conversation.bot_answers,
        "work_item_id": conversation.work_item_id,
    }


def conversation_detail(conversation: Conversation) -> dict[str, Any]:
    """A conversation with its whole transcript and its customer, for the agent's tab."""
    name = conversation.customer.display_name
    messages = conversation.messages.select_related("agent__user").order_by("created_at", "id")
    return {
        **conversation_summary(conversation),
        "customer": customer_summary(conversation.customer),
        "messages": [message_payload(m, name) for m in messages],
    }


def customer_summary(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.pk,
        "display_name": customer.display_name,
        "created_at": customer.created_at.isoformat(),
        "identities": [
            {"kind": i.kind, "kind_label": i.get_kind_display(), "value": i.value}
            for i in customer.identities.order_by("kind", "value")
        ],
    }


def case_payload(case: Case) -> dict[str, Any]:
    return {
        **intake_case_payload(case),
        "customer_id": case.customer_id,
        "conversation_id": case.conversation_id,
    }


def intake_case_payload(case: Case) -> dict[str, Any]:
    """A case without its customer: what whoever named the customer by an address gets back,
    identical whether the address was known or not."""
    return {
        "id": case.pk,
        "subject": case.subject,
        "description": case.description,
        "status": case.status,
        "status_label": case.get_status_display(),
        "priority": case.priority,
        "origin": case.origin,
        "origin_label": case.get_origin_display(),
        "verification": case.verification,
        "unverified": case.verification == CaseVerification.PENDING,
        "work_item_id": case.work_item_id,
        "created_at": case.created_at.isoformat(),
        "updated_at": case.updated_at.isoformat(),
        "closed_at": case.closed_at.isoformat() if case.closed_at else None,
    }


def customer_conversations(customer: Customer, viewer: Any) -> QuerySet[Conversation]:
    """The customer's conversations the viewer may see, newest first, transcripts prefetched."""
    return (
        visible_conversations(viewer)
        .filter(customer=customer)
        .select_related("account", "identity", "assigned_agent__user", "customer")
        .prefetch_related(
            Prefetch(
                "messages",
                queryset=Message.objects.select_related("agent__user").order_by("created_at", "id"),
            )
        )
        .order_by("-started_at", "-id")
    )


def customer_cases(customer: Customer, viewer: Any) -> QuerySet[Case]:
    return visible_cases(viewer).filter(customer=customer).order_by("-created_at", "-id")


def customer_merges(customer: Customer) -> QuerySet[MergeRecord]:
    """Merges into this customer, newest first (undone ones included, as history)."""
    return customer.merges_in.select_related("actor", "undone_by").order_by("-merged_at", "-id")


def merge_payload(record: MergeRecord) -> dict[str, Any]:
    return {
        "id": record.pk,
        "survivor_id": record.survivor_id,
        "merged_id": record.merged_id,
        "actor": record.actor.get_username() if record.actor else None,
        "merged_at": record.merged_at.isoformat(),
        "moved": {
            "identities": list(record.identity_ids),
            "conversations": list(record.conversation_ids),
            "cases": list(record.case_ids),
        },
        "undone_at": record.undone_at.isoformat() if record.undone_at else None,
        "undone_by": record.undone_by.get_username() if record.undone_by else None,
    }


def customer_record(customer: Customer, viewer: Any) -> dict[str, Any]:
    """The customer with the conversations (full transcripts) and cases the viewer may see,
    newest first, and the merges into them."""
    name = customer.display_name
    conversations = [
        {
            **conversation_summary(c),
            "messages": [message_payload(m, name) for m in c.messages.all()],
        }
        for c in customer_conversations(customer, viewer)
    ]
    cases = [case_payload(c) for c in customer_cases(customer, viewer)]
    merges = [merge_payload(m) for m in customer_merges(customer)]
    return {
        **customer_summary(customer),
        "conversations": conversations,
        "cases": cases,
        "merges": merges,
    }


def history_items(customer: Customer, viewer: Any) -> list[tuple[str, Any]]:
    """The conversations and cases the viewer may see, in one list, newest first."""
    items: list[tuple[Any, str, Any]] = [
        (c.started_at, "conversation", c) for c in customer_conversations(customer, viewer)
    ]
    items += [(c.created_at, "case", c) for c in customer_cases(customer, viewer)]
    items.sort(key=lambda row: row[0], reverse=True)
    return [(kind, obj) for _, kind, obj in items]


def agents_for_conversation(conversation: Conversation) -> list[int]:
    """Agents to tell about the conversation: whoever holds its work item now (offered or
    accepted), and its assigned agent."""
    ids: set[int] = set()
    if conversation.work_item_id:
        ids.update(
            AgentWork.objects.filter(
                item_id=conversation.work_item_id, state__in=LIVE_STATES
            ).values_list("agent_id", flat=True)
        )
    if conversation.assigned_agent_id:
        ids.add(conversation.assigned_agent_id)
    return sorted(ids)


def opened_work_for(conversation: Conversation, agent: Agent) -> AgentWork | None:
    """The agent's accepted work on the conversation's item, if they hold it."""
    if not conversation.work_item_id:
        return None
    return AgentWork.objects.filter(
        item_id=conversation.work_item_id, agent=agent, state=AgentWorkState.OPENED
    ).first()


def can_view_customers(user: Any) -> bool:
    """The user has a role that may read customers at all (which ones: ``visible_customers``)."""
    return roles.agent_of(user) is not None or roles.is_supervisor(user)


def quick_replies(language: str = "") -> list[dict[str, Any]]:
    qs = QuickReply.objects.all()
    if language:
        qs = qs.filter(language__in=["", language])
    return [{"id": q.pk, "title": q.title, "text": q.text} for q in qs]


def identity_for(kind: str, value: str) -> CustomerIdentity | None:
    found = CustomerIdentity.objects.select_related("customer").filter(kind=kind, value=value)
    return found.first()


def webchat_history(
    identity: CustomerIdentity, account_id: int, limit: int = 100
) -> dict[str, Any]:
    """What a returning visitor's widget shows: their latest conversation on this account."""
    conversation = (
        Conversation.objects.filter(identity=identity, account_id=account_id)
        .order_by("-started_at", "-id")
        .first()
    )
    if conversation is None:
        return {"conversation": None, "messages": []}
    messages = conversation.messages.select_related("agent__user").order_by("-created_at", "-id")
    rows = list(messages[:limit])[::-1]
    return {
        "conversation": {"id": conversation.pk, "status": conversation.status},
        "messages": [widget_message(m) for m in rows],
    }


def widget_message(message: Message) -> dict[str, Any]:
    """A message as the customer's widget sees it (no internal fields, agent's first name)."""
    name = ""
    if message.author == Author.AGENT and message.agent is not None:
        user = message.agent.user
        name = user.first_name or user.get_username()
    elif message.author == Author.BOT:
        name = _("Bot")
    return {
        "id": message.pk,
        "conversation_id": message.conversation_id,
        "direction": message.direction,
        "author": message.author,
        "author_name": name,
        "text": message.text,
        "choices": list(message.choices or []),
        "status": message.status,
        "created_at": message.created_at.isoformat(),
    }


def may_merge(user: Any, sides: list[tuple[QuerySet[Conversation], QuerySet[Case]]]) -> bool:
    """Joining or splitting customers the user can see: supervisors (admins) may; an agent only
    while holding accepted work on each side (e.g. both conversations they are answering)."""
    if roles.is_supervisor(user):
        return True
    agent = roles.agent_of(user)
    return agent is not None and all(
        holds_work_on(agent, conversations=conversations, cases=cases)
        for conversations, cases in sides
    )
