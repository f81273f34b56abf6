"""Configuration edits that change how live work routes: routing configurations, queues,
presence statuses. Plain records go through ``omnirouter.configuration``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from omnirouter.configuration import save_configuration
from presence.models import Agent, PresenceStatus
from routing.dispatch import request_routing
from routing.models import (
    AgentWork,
    AgentWorkState,
    Queue,
    RoutingConfiguration,
    ServiceChannel,
    WorkItem,
    WorkItemStatus,
)
from routing.services.events import queue_changed
from routing.services.locks import (
    lock_agents,
)
from routing.services.transitions import end_work, return_item

logger = logging.getLogger(__name__)


LIVE_ITEM_STATES = (WorkItemStatus.WAITING, WorkItemStatus.OFFERED, WorkItemStatus.ASSIGNED)


def update_routing_config(
    *, config: RoutingConfiguration, changes: Mapping[str, Any]
) -> RoutingConfiguration:
    """Edit a routing configuration.

    Items carry a copy of their queue's routing priority (the claim query orders on it without a
    join), so a new routing priority is copied to the live items of the configuration's queues
    and a routing pass is requested: cross-queue order follows the edit at once. ``config`` may
    already hold the new values (the admin's form sets them); the stored row is the "before".
    """
    with transaction.atomic():
        before = (
            RoutingConfiguration.objects.select_for_update()
            .values_list("routing_priority", flat=True)
            .get(pk=config.pk)
        )
        save_configuration(instance=config, changes=changes)
        if config.routing_priority != before:
            sync_queue_items(queue_ids=list(config.queues.values_list("id", flat=True)))
        else:
            request_routing()
    return config


def save_queue(
    *,
    queue: Queue,
    changes: Mapping[str, Any],
    members: Iterable[Agent] | None = None,
    supervisors: Iterable[User] | None = None,
) -> Queue:
    """Create or edit a queue; ``members`` and ``supervisors``, when given, become exactly those.

    A queue moved to another routing configuration takes its live items along to the new routing
    priority. New members may take waiting work at once: a routing pass is requested.
    """
    with transaction.atomic():
        before = None
        if queue.pk is not None:
            before = (
                Queue.objects.select_for_update(of=("self",))
                .values_list("routing_config_id", flat=True)
                .get(pk=queue.pk)
            )
        m2m: dict[str, Iterable[Any]] = {}
        if members is not None:
            m2m["members"] = members
        if supervisors is not None:
            m2m["supervisors"] = supervisors
        save_configuration(instance=queue, changes=changes, m2m=m2m)
        if before is not None and before != queue.routing_config_id:
            sync_queue_items(queue_ids=[queue.pk])
        elif members is not None:
            request_routing()
    return queue


def sync_queue_items(*, queue_ids: Iterable[int]) -> int:
    """Give the live items of these queues the routing priority of their queue's configuration.

    Offered and assigned items follow too: a decline or a timeout puts them back in line. Returns
    how many items changed. Side effects: a routing pass is requested, supervisors are told.
    """
    ids = sorted(set(queue_ids))
    changed = 0
    with transaction.atomic():
        # Queue rows locked in id order: two edits reaching the same queues update their items
        # one after the other rather than in crossed order.
        queues = list(
            Queue.objects.select_for_update(of=("self",))
            .filter(id__in=ids)
            .order_by("id")
            .values_list("id", "routing_config__routing_priority")
        )
        for queue_id, routing_priority in queues:
            count = (
                WorkItem.objects.filter(queue_id=queue_id, status__in=LIVE_ITEM_STATES)
                .exclude(routing_priority=routing_priority)
                .update(routing_priority=routing_priority)
            )
            if count:
                queue_changed(queue_id)
                changed += count
        request_routing()
    return changed


def update_presence_status(
    *,
    status: PresenceStatus,
    changes: Mapping[str, Any],
    channels: Iterable[ServiceChannel] | None = None,
    now: datetime | None = None,
) -> PresenceStatus:
    """Edit a presence status. Agents in it keep it; their pending offers for channels it no
    longer covers (all of them, if it is no longer online) go back to their queues, and a routing
    pass is requested for the channels it may now cover."""
    with transaction.atomic():
        save_configuration(
            instance=status,
            changes=changes,
            m2m={"channels": channels} if channels is not None else None,
        )
        release_uncovered_offers(status_id=status.pk, now=now)
    return status


def release_uncovered_offers(*, status_id: int, now: datetime | None = None) -> int:
    """Return to their queues the pending offers that agents in this status may no longer hold
    (the status was edited). Accepted work stays. Requests a routing pass; returns the count."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = lock_agents(Agent.objects.filter(status_id=status_id).values_list("id", flat=True))
        status = PresenceStatus.objects.get(pk=status_id)
        keep = set(status.channels.values_list("id", flat=True)) if status.is_online else set()
        stranded = list(
            AgentWork.objects.select_for_update(of=("self",))
            # Re-checked under the agents' locks: an agent may have changed status meanwhile.
            .filter(agent_id__in=locked, agent__status_id=status_id, state=AgentWorkState.PUSHED)
            .exclude(channel_id__in=keep)
            .order_by("id")
        )
        for work in stranded:
            end_work(
                work,
                AgentWorkState.CANCELED,
                now=now,
                note="Returned to queue: agent no longer available for this channel.",
            )
            return_item(work.item_id)
        request_routing()
    return len(stranded)
