"""A customer's whole story: every conversation and case on every channel, newest first.

Reads only, scoped like every customer read (``messaging.selectors.visible_*``): the timeline
of what the asking user may see, searchable and paged in the database (one UNION query for the
page, then its transcripts and cases), and the "also wrote on SMS 2 days ago" line a returning
customer's new conversation shows. Also who holds the customer's live conversations, for
grouping a second channel's conversation with the same agent (``live_agent_for``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Exists, F, OuterRef, Prefetch, Q, Value
from django.db.models.fields import CharField
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from messaging.models import (
    OPEN_CONVERSATION,
    Case,
    Conversation,
    ConversationStatus,
    Customer,
    Message,
)
from messaging.selectors import (
    case_payload,
    conversation_summary,
    message_payload,
    visible_cases,
    visible_conversations,
)
from presence.models import Agent
from routing.models import LIVE_STATES, AgentWork, AgentWorkState, Queue

PAGE_SIZE = 20
MAX_PAGE_SIZE = 50
MAX_QUERY_LENGTH = 200


def customer_timeline(
    customer: Customer, viewer: Any, *, q: str = "", page: int = 1, page_size: int = PAGE_SIZE
) -> dict[str, Any]:
    """One page of the customer's conversations (with their transcripts) and cases that
    ``viewer`` may see, newest first (a conversation by its start, a case by its opening).

    ``q`` keeps the conversations with a message containing it and the cases whose subject or
    description does (case-insensitive); a conversation's ``matches`` lists the ids of those
    messages. Constant in queries: the page (UNION of both scoped lists), its transcripts, its
    cases.
    """
    q = (q or "").strip()[:MAX_QUERY_LENGTH]
    page = max(1, page)
    page_size = min(max(1, page_size), MAX_PAGE_SIZE)
    conversations = visible_conversations(viewer).filter(customer=customer)
    cases = visible_cases(viewer).filter(customer=customer)
    if q:
        said = Message.objects.filter(conversation=OuterRef("pk"), text__icontains=q)
        conversations = conversations.filter(Exists(said))
        cases = cases.filter(Q(subject__icontains=q) | Q(description__icontains=q))
    kind = Value("conversation", output_field=CharField())
    rows = conversations.annotate(entry=kind, at=F("started_at")).values_list("entry", "pk", "at")
    kind = Value("case", output_field=CharField())
    rows = rows.union(
        cases.annotate(entry=kind, at=F("created_at")).values_list("entry", "pk", "at"), all=True
    )
    start = (page - 1) * page_size
    window = list(rows.order_by("-at", "-pk")[start : start + page_size + 1])
    more = len(window) > page_size
    window = window[:page_size]
    conversation_ids = [pk for entry, pk, _at in window if entry == "conversation"]
    case_ids = [pk for entry, pk, _at in window if entry == "case"]
    transcripts = {
        c.pk: c
        for c in Conversation.objects.filter(pk__in=conversation_ids)
        .select_related("account", "identity", "assigned_agent__user", "customer")
        .prefetch_related(
            Prefetch(
                "messages",
                queryset=Message.objects.select_related("agent__user").order_by("created_at", "id"),
            )
        )
    }
    found_cases = {c.pk: c for c in Case.objects.filter(pk__in=case_ids)} if case_ids else {}
    needle = q.casefold()
    entries = []
    for entry, pk, at in window:
        if entry == "conversation":
            conversation = transcripts[pk]
            messages = list(conversation.messages.all())
            entries.append(
                {
                    "type": "conversation",
                    "at": at.isoformat(),
                    "conversation": {
                        **conversation_summary(conversation),
                        "messages": [message_payload(m, customer.display_name) for m in messages],
                        "matches": [
                            m.pk for m in messages if needle and needle in m.text.casefold()
                        ],
                    },
                }
            )
        else:
            entries.append(
                {"type": "case", "at": at.isoformat(), "case": case_payload(found_cases[pk])}
            )
    return {
        "customer_id": customer.pk,
        "q": q,
        "page": page,
        "page_size": page_size,
        "next_page": page + 1 if more else None,
        "results": entries,
    }


def also_wrote(
    conversation: Conversation, viewer: Any, *, now: datetime | None = None
) -> dict[str, Any] | None:
    """The customer's latest other conversation the viewer may see, as one translated line for
    the agent: "Also wrote on SMS 2 days ago", "Also wrote on WhatsApp today", or "Also writing
    on SMS now" while it is open. None for a customer's first conversation."""
    now = now or timezone.now()
    other = (
        visible_conversations(viewer)
        .filter(customer_id=conversation.customer_id)
        .exclude(pk=conversation.pk)
        .select_related("account")
        .order_by("-last_activity_at", "-id")
        .first()
    )
    if other is None:
        return None
    channel = str(other.account.get_kind_display())
    live = other.status != ConversationStatus.ENDED
    days = max(0, (now - other.last_activity_at).days)
    if live:
        text = _("Also writing on %(channel)s now") % {"channel": channel}
    elif days == 0:
        text = _("Also wrote on %(channel)s today") % {"channel": channel}
    else:
        text = ngettext(
            "Also wrote on %(channel)s %(count)s day ago",
            "Also wrote on %(channel)s %(count)s days ago",
            days,
        ) % {"channel": channel, "count": days}
    return {
        "conversation_id": other.pk,
        "channel": other.account.kind,
        "channel_label": channel,
        "at": other.last_activity_at.isoformat(),
        "live": live,
        "days": days,
        "text": text,
    }


def live_agent_for(conversation: Conversation, *, queue: Queue | None = None) -> Agent | None:
    """The agent holding (accepted, or offered right now) another open conversation of the same
    customer: a second channel's conversation goes to them first. Accepted work wins over an
    offer, the most recent over older. ``queue``: only an agent who is a member of it."""
    works = AgentWork.objects.filter(
        state__in=LIVE_STATES,
        item__conversation__customer_id=conversation.customer_id,
        item__conversation__status__in=[ConversationStatus.WAITING, ConversationStatus.ACTIVE],
    ).exclude(item__conversation=conversation)
    if queue is not None:
        works = works.filter(agent__memberships__queue=queue)
    live = list(works.select_related("agent__user").order_by("-pk")[:10])
    accepted = [w for w in live if w.state == AgentWorkState.OPENED]
    chosen = accepted or live
    return chosen[0].agent if chosen else None


def open_siblings(conversation: Conversation) -> list[int]:
    """The customer's other open conversations (on any channel), oldest first."""
    return list(
        Conversation.objects.filter(OPEN_CONVERSATION, customer_id=conversation.customer_id)
        .exclude(pk=conversation.pk)
        .order_by("started_at", "pk")
        .values_list("pk", flat=True)[:10]
    )
