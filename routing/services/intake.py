"""Intake: new work items enter their queue; canceled ones leave it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from omnirouter.errors import Conflict, DomainError
from presence.models import Agent
from routing.dispatch import request_routing
from routing.models import (
    AgentWorkState,
    Queue,
    QueueMembership,
    ServiceChannel,
    WorkItem,
    WorkItemStatus,
)
from routing.services import classification, records
from routing.services.events import queue_changed
from routing.services.locks import (
    lock_item_and_live_work,
    retry_if_live_work_moved,
)
from routing.services.skills import SkillNeed, attribute_needs, require_skills
from routing.services.transitions import end_work, size_from

logger = logging.getLogger(__name__)


def enqueue_work(
    *,
    queue: Queue,
    channel: ServiceChannel,
    subject: str,
    priority: int = 5,
    secondary_priority: int = 5,
    payload: dict[str, Any] | None = None,
    record: models.Model | None = None,
    created_by: User | None = None,
    preferred_agent: Agent | None = None,
    preferred_for: timedelta | None = None,
    skills: Sequence[SkillNeed] = (),
    now: datetime | None = None,
) -> WorkItem:
    """Create a waiting work item in ``queue``.

    Size comes from the queue's routing configuration (units or a percentage of capacity), else
    the channel's default. It requires ``skills`` (``services.skills.parse_needs`` reads them
    from the API) and the skills its payload's attributes call for (``attribute_needs``; a skill
    also given in ``skills`` is required as given there), written in the same transaction.
    ``preferred_agent``: a member of ``queue`` the item waits for, for ``preferred_for``
    (default ``ROUTING_PREFERRED_AGENT_SECONDS``) while they are online for its channel, before
    any member may have it (``DomainError`` for someone outside the queue, or a time below one
    second). Active classification rules then run on it (they may move it, set its priorities,
    add skills; ``services.classification``). Side effects: a routing pass is requested and the
    queue's supervisors are told, both after commit.
    """
    now = now or timezone.now()
    if not 1 <= priority <= 10:
        raise DomainError(_("Priority must be between 1 (most urgent) and 10."), "priority")
    if not 1 <= secondary_priority <= 10:
        raise DomainError(
            _("Secondary priority must be between 1 (most urgent) and 10."), "secondary_priority"
        )
    needs = _needs(skills, payload or {})
    preferred_until = _preferred_until(queue, preferred_agent, preferred_for, now)
    config = queue.routing_config
    size_units, size_percent = size_from(config, channel)
    item = WorkItem(
        queue=queue,
        channel=channel,
        subject=subject,
        priority=priority,
        secondary_priority=secondary_priority,
        payload=payload or {},
        routing_priority=config.routing_priority,
        size_units=size_units,
        size_percent=size_percent,
        created_at=now,
        enqueued_at=now,
        created_by=created_by if created_by and created_by.is_authenticated else None,
        preferred_agent=preferred_agent,
        preferred_until=preferred_until,
    )
    if record is not None:
        item.record_type = ContentType.objects.get_for_model(record)
        item.record_id = str(record.pk)
    with transaction.atomic():
        item.save()
        require_skills(item, needs)
        # Classification rules may set its queue, priorities and skills before it is routed.
        classification.classify_at_intake(item, now=now)
        queue_changed(queue.pk)
        request_routing()
    return item


def _needs(skills: Sequence[SkillNeed], payload: dict[str, Any]) -> list[SkillNeed]:
    given: dict[int, SkillNeed] = {}
    for need in skills:
        if need.skill_id in given:
            raise DomainError(
                _("Skill %(id)s is required twice; name each skill once.") % {"id": need.skill_id},
                "skills",
            )
        given[need.skill_id] = need
    by_attribute = [n for n in attribute_needs(payload) if n.skill_id not in given]
    return [*given.values(), *by_attribute]


def _preferred_until(
    queue: Queue, agent: Agent | None, hold: timedelta | None, now: datetime
) -> datetime | None:
    """Until when an item waits for its preferred ``agent``; checks the preference is one the
    router can honour (a hold for an agent outside the queue would only delay the item)."""
    if agent is None:
        if hold is not None:
            raise DomainError(
                _("A time to wait for the preferred agent needs a preferred agent."),
                "preferred_for_seconds",
            )
        return None
    if hold is None:
        hold = timedelta(seconds=settings.ROUTING_PREFERRED_AGENT_SECONDS)
    if hold < timedelta(seconds=1):
        raise DomainError(
            _("The time to wait for the preferred agent must be at least one second."),
            "preferred_for_seconds",
        )
    if not QueueMembership.objects.filter(queue=queue, agent=agent).exists():
        raise DomainError(
            _("%(agent)s is not a member of the queue %(queue)s, so cannot be its preferred agent.")
            % {"agent": agent, "queue": queue},
            "preferred_agent",
        )
    return now + hold


def cancel_work_item(*, item_id: int, now: datetime | None = None) -> WorkItem:
    """Cancel an item that is waiting or offered (the customer left, the case was withdrawn).

    A pending offer is withdrawn and its capacity freed. Assigned items are the agent's to close.
    The record behind the item is told in the same transaction.
    """
    now = now or timezone.now()
    return retry_if_live_work_moved(lambda: _cancel_work_item(item_id, now), item_id)


def _cancel_work_item(item_id: int, now: datetime) -> WorkItem:
    with transaction.atomic():
        item, live = lock_item_and_live_work(item_id)
        if item.status in (WorkItemStatus.CLOSED, WorkItemStatus.CANCELED):
            raise Conflict(
                _("Item %(id)s has already ended (%(status)s).")
                % {"id": item_id, "status": item.get_status_display()},
                "ended",
            )
        if item.status == WorkItemStatus.ASSIGNED:
            raise Conflict(
                _("Item %(id)s is assigned to an agent; the agent closes it.") % {"id": item_id},
                "assigned",
            )
        if live is not None:
            end_work(live, AgentWorkState.CANCELED, now=now, note="Item canceled.")
        item.status = WorkItemStatus.CANCELED
        item.ended_at = now
        item.save(update_fields=["status", "ended_at"])
        records.item_changed_one(records.CANCELED, item, agent_id=None, now=now)
        queue_changed(item.queue_id)
        if live is not None:
            request_routing()
    return item
