"""Assistance reads: the closed items training learns from, one item's text, who may see what."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from assist.features import Doc, disposition_of, item_text
from assist.models import AssistConfiguration, ExcludedCustomer, ModelVersion
from messaging.models import Direction, Message
from omnirouter import roles
from routing.models import AgentWork, AgentWorkState, WorkItem, WorkItemStatus
from routing.selectors import supervised_queues


def configuration() -> AssistConfiguration:
    config = AssistConfiguration.objects.order_by("id").first()
    return config if config is not None else AssistConfiguration()


def active_version_key() -> tuple[int, str] | None:
    """The active version's id and its model's HMAC (which changes with the model), or None."""
    return ModelVersion.objects.filter(is_active=True).values_list("id", "blob_hmac").first()


def _first_messages(conversation_ids: list[int]) -> dict[int, list[str]]:
    texts: dict[int, list[str]] = defaultdict(list)
    if not conversation_ids:
        return texts
    rows = (
        Message.objects.filter(conversation_id__in=conversation_ids, direction=Direction.IN)
        .order_by("conversation_id", "created_at", "id")
        .values_list("conversation_id", "text")
    )
    for conversation_id, text in rows.iterator(chunk_size=2000):
        if len(texts[conversation_id]) < 3:
            texts[conversation_id].append(text)
    return texts


def _items_with_records(items: QuerySet[WorkItem]) -> QuerySet[WorkItem]:
    return items.select_related("channel", "queue", "conversation", "case").only(
        "id",
        "subject",
        "payload",
        "priority",
        "created_at",
        "channel__key",
        "queue__name",
        "conversation__id",
        "conversation__customer_id",
        "case__id",
        "case__customer_id",
        "case__description",
    )


def _messages_of(item: WorkItem, first: dict[int, list[str]]) -> tuple[list[str], int | None]:
    conversation = getattr(item, "conversation", None)
    if conversation is not None:
        return first.get(conversation.pk, []), conversation.customer_id
    case = getattr(item, "case", None)
    if case is not None:
        return ([case.description] if case.description else []), case.customer_id
    return [], None


def training_docs(*, since: datetime | None, until: datetime, limit: int) -> list[Doc]:
    """Closed items created in [since, until), oldest first (at most the newest ``limit``),
    without those of customers excluded from learning. Plain reads: no row is locked."""
    allowed = list(configuration().payload_fields or [])
    items = WorkItem.objects.filter(status=WorkItemStatus.CLOSED, created_at__lt=until)
    if since is not None:
        items = items.filter(created_at__gte=since)
    excluded = ExcludedCustomer.objects.values("customer_id")
    items = items.exclude(Q(conversation__customer__in=excluded) | Q(case__customer__in=excluded))
    rows = list(_items_with_records(items).order_by("-created_at", "-id")[:limit])
    rows.reverse()
    first = _first_messages([r.conversation.pk for r in rows if hasattr(r, "conversation")])
    notes: dict[int, str] = {}
    closed = AgentWork.objects.filter(
        item_id__in=[r.pk for r in rows], state=AgentWorkState.CLOSED
    ).values_list("item_id", "end_note")
    for item_id, note in closed.iterator(chunk_size=2000):
        notes[item_id] = note
    docs = []
    for item in rows:
        messages, customer_id = _messages_of(item, first)
        note = notes.get(item.pk, "")
        docs.append(
            Doc(
                item_id=item.pk,
                created_at=item.created_at,
                text=item_text(
                    subject=item.subject,
                    messages=messages,
                    channel=item.channel.key,
                    payload=item.payload,
                    allowed_fields=allowed,
                ),
                queue=item.queue.name,
                priority=str(item.priority),
                disposition=disposition_of(note),
                note=note,
                customer_id=customer_id,
            )
        )
    return docs


def item_fields(item: WorkItem) -> dict[str, Any]:
    """What ``assist.predict`` needs of one item: subject, first messages, channel, payload."""
    item = _items_with_records(WorkItem.objects.filter(pk=item.pk)).get()
    conversation = getattr(item, "conversation", None)
    first = _first_messages([conversation.pk]) if conversation is not None else {}
    messages, _ = _messages_of(item, first)
    return {
        "subject": item.subject,
        "messages": messages,
        "channel": item.channel.key,
        "payload": item.payload,
    }


def fields_text(fields: dict[str, Any], *, config: AssistConfiguration | None = None) -> str:
    config = config or configuration()
    return item_text(
        subject=str(fields.get("subject", "")),
        messages=list(fields.get("messages", [])),
        channel=str(fields.get("channel", "")),
        payload=fields.get("payload") or {},
        allowed_fields=list(config.payload_fields or []),
    )


def assistable_items(user: Any) -> QuerySet[WorkItem]:
    """Items whose predictions and suggestions a user may see: admins all, supervisors those in
    the queues they supervise, an agent those offered to or held by them. Intake clients none:
    assistance is for the people working the item."""
    if roles.is_admin(user):
        return WorkItem.objects.all()
    visible = Q(queue__in=supervised_queues(user))
    agent = roles.agent_of(user)
    if agent is not None:
        live = AgentWork.objects.filter(
            agent=agent, state__in=[AgentWorkState.PUSHED, AgentWorkState.OPENED]
        ).values("item_id")
        visible |= Q(id__in=live)
    return WorkItem.objects.filter(visible)
