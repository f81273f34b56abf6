"""Reads of messaging state: payloads for consoles, the API, the widget and the customer record."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from django.utils.translation import gettext as _

from messaging.models import (
    Author,
    Case,
    Conversation,
    Customer,
    CustomerIdentity,
    Message,
    QuickReply,
)
from presence.models import Agent
from routing.models import LIVE_STATES, AgentWork, AgentWorkState


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
        "id": case.pk,
        "subject": case.subject,
        "description": case.description,
        "status": case.status,
        "status_label": case.get_status_display(),
        "priority": case.priority,
        "origin": case.origin,
        "origin_label": case.get_origin_display(),
        "customer_id": case.customer_id,
        "conversation_id": case.conversation_id,
        "work_item_id": case.work_item_id,
        "created_at": case.created_at.isoformat(),
        "updated_at": case.updated_at.isoformat(),
        "closed_at": case.closed_at.isoformat() if case.closed_at else None,
    }


def customer_conversations(customer: Customer) -> QuerySet[Conversation]:
    """Every conversation of the customer, newest first, transcripts prefetched."""
    return (
        Conversation.objects.filter(customer=customer)
        .select_related("account", "identity", "assigned_agent__user", "customer")
        .prefetch_related(
            Prefetch(
                "messages",
                queryset=Message.objects.select_related("agent__user").order_by("created_at", "id"),
            )
        )
        .order_by("-started_at", "-id")
    )


def customer_record(customer: Customer) -> dict[str, Any]:
    """The customer with every conversation (full transcripts) and case, newest first."""
    name = customer.display_name
    conversations = [
        {
            **conversation_summary(c),
            "messages": [message_payload(m, name) for m in c.messages.all()],
        }
        for c in customer_conversations(customer)
    ]
    cases = [case_payload(c) for c in customer.cases.order_by("-created_at", "-id")]
    return {**customer_summary(customer), "conversations": conversations, "cases": cases}


def history_items(customer: Customer) -> list[tuple[str, Any]]:
    """Conversations and cases in one list, newest first, for the customer page."""
    items: list[tuple[Any, str, Any]] = [
        (c.started_at, "conversation", c) for c in customer_conversations(customer)
    ]
    items += [(c.created_at, "case", c) for c in customer.cases.order_by("-created_at")]
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
    from omnirouter import roles

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
