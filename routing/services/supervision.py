"""Supervisors' actions on items: move to another queue, push to a chosen agent. Scope checks
are the caller's (``supervisor.services``); these record the actor in ``ActionLog``.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from omnirouter.errors import Conflict
from presence.models import Agent
from routing.dispatch import request_routing
from routing.models import (
    ActionLog,
    AgentWork,
    AgentWorkState,
    Queue,
    WorkItem,
    WorkItemStatus,
)
from routing.services.events import queue_changed
from routing.services.locks import (
    lock_agents,
    lock_item,
    lock_item_and_live_work,
    retry_if_live_work_moved,
)
from routing.services.transitions import end_work, offer_directly, refuse_unless_able, requeue

logger = logging.getLogger(__name__)


def move_item(*, item_id: int, queue: Queue, actor: User, now: datetime | None = None) -> WorkItem:
    """Move a waiting (or offered) item to another queue; a pending offer is withdrawn."""
    now = now or timezone.now()
    return retry_if_live_work_moved(lambda: _move_item(item_id, queue, actor, now), item_id)


def _move_item(item_id: int, queue: Queue, actor: User, now: datetime) -> WorkItem:
    with transaction.atomic():
        item, live = lock_item_and_live_work(item_id)
        if item.status not in (WorkItemStatus.WAITING, WorkItemStatus.OFFERED):
            raise Conflict(_("Only waiting or offered items can be moved."), item.status)
        if live is not None:
            end_work(live, AgentWorkState.CANCELED, now=now, note="Moved by a supervisor.")
        old_queue = item.queue_id
        requeue(item_id, queue, now=now, keep_age=True)
        ActionLog.objects.create(
            at=now,
            actor=actor,
            verb="move_item",
            item_id=item_id,
            detail={"from_queue": old_queue, "to_queue": queue.pk},
        )
        queue_changed(old_queue)
        request_routing()
    item.refresh_from_db()
    return item


def push_item_to_agent(
    *, item_id: int, agent: Agent, actor: User, now: datetime | None = None
) -> AgentWork:
    """Offer a waiting item to a chosen agent, past the routing model: refusals and a preferred
    agent do not stop it; every other rule of ``engine.eligibility`` does (``Conflict`` with the
    reason as code: not_member, skill, offline, channel, no_console, capacity, pacing: a push is
    an offer, so an agent at their limit of unanswered offers gets no more this way either)."""
    now = now or timezone.now()
    with transaction.atomic():
        lock_agents([agent.pk])
        item = lock_item(item_id)
        if item.status != WorkItemStatus.WAITING:
            raise Conflict(_("Only waiting items can be pushed to an agent."), item.status)
        fresh = Agent.objects.select_related("status", "presence_config").get(pk=agent.pk)
        # A supervisor's choice overrides the router's (a refusal's cooldown, a preferred
        # agent), not what makes an agent unable to take the item.
        refuse_unless_able(item, fresh, now=now)
        username = getattr(actor, "username", "")
        work = offer_directly(
            item,
            fresh,
            now=now,
            reason={
                "rule": "supervisor",
                "actor": username,
                "text": f"Pushed by supervisor {username}.",
            },
        )
        ActionLog.objects.create(
            at=now,
            actor=actor,
            verb="push_item",
            item=item,
            agent=fresh,
            detail={"work_id": work.pk},
        )
    return work
