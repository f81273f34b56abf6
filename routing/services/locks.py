"""Locks, taken in the one order every writer uses, so no two transactions wait on each other
in a cycle: routing pass lock -> agent rows (by id) -> agent work rows -> work item rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db import connection
from django.utils.translation import gettext as _

from omnirouter.errors import Conflict, NotFound
from presence.models import Agent
from routing.models import (
    LIVE_STATES,
    AgentWork,
    WorkItem,
)

logger = logging.getLogger(__name__)


# Arbitrary, fixed: the advisory lock that serialises routing passes across workers.
PASS_LOCK_KEY = 0x0A11_0C8E


def take_pass_lock() -> None:
    # Passes are serialised so cross-queue priority holds with any number of workers: a pass
    # that ran beside another could hand an agent lower-priority work while the other pass held
    # the higher-priority items locked. Waiting here is short (one batch); SQLite has one writer.
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [PASS_LOCK_KEY])


def lock_agents(agent_ids: Iterable[int]) -> list[int]:
    """Lock agent rows in id order (the one order every writer uses: no deadlocks).

    ``FOR NO KEY UPDATE``: writers of agent rows still wait on each other, but a row that only
    refers to the agent (a message or a conversation naming its agent, a new agent work) does
    not wait for the lock holder: its foreign-key check takes a key-share lock, which this lock
    leaves free. Otherwise a messaging write holding a conversation and naming the agent, and a
    routing change holding the agent and then updating that conversation (its record's hook),
    would wait on each other.
    """
    ids = sorted(set(agent_ids))
    if not ids:
        return []
    return list(
        Agent.objects.select_for_update(no_key=True)
        .filter(id__in=ids)
        .order_by("id")
        .values_list("id", flat=True)
    )


class LiveWorkMoved(Exception):
    """An item's live agent work changed while its locks were being taken."""


def lock_item_and_live_work(item_id: int) -> tuple[WorkItem, AgentWork | None]:
    """Lock an item and its live agent work, if any, in the one lock order: agent, agent work,
    item. (Locking the item before the agent work let a cancel and an accept - which holds the
    agent work and then updates the item - wait on each other.)

    Which agent to lock is known only from an unlocked read; if the live work is not the same
    once the locks are held (an offer was made or ended in between), ``LiveWorkMoved`` rolls
    the caller's transaction back before it wrote anything.
    """
    seen = live_work_of(item_id)
    if seen is not None:
        lock_agents([seen.agent_id])
    live = (
        AgentWork.objects.select_for_update(of=("self",))
        .filter(item_id=item_id, state__in=LIVE_STATES)
        .first()
    )
    item = lock_item(item_id)
    # Once the item is locked no offer can be made for it (a pass skips locked items, a
    # supervisor's push waits for the item), so this check holds until commit.
    now_live = live_work_of(item_id)
    ids = {getattr(w, "pk", None) for w in (seen, live, now_live)}
    if len(ids) != 1:
        raise LiveWorkMoved
    return item, live


def retry_if_live_work_moved(action: Any, item_id: int, attempts: int = 3) -> Any:
    for _attempt in range(attempts):
        try:
            return action()
        except LiveWorkMoved:
            continue
    raise Conflict(
        _("Item %(id)s kept changing while this ran; try again.") % {"id": item_id}, "busy"
    )


def lock_item(item_id: int) -> WorkItem:
    try:
        return (
            WorkItem.objects.select_for_update(of=("self",)).select_related("queue").get(pk=item_id)
        )
    except WorkItem.DoesNotExist:
        raise NotFound(_("No work item %(id)s.") % {"id": item_id}, "not_found") from None


def live_work_of(item_id: int) -> AgentWork | None:
    return AgentWork.objects.filter(item_id=item_id, state__in=LIVE_STATES).first()


def get_own_work(work_id: int, agent: Agent) -> AgentWork:
    work = AgentWork.objects.filter(pk=work_id).select_related("item", "queue", "channel").first()
    if work is None or work.agent_id != agent.pk:
        # Someone else's work is reported as missing: its existence is not the caller's business.
        raise NotFound(_("No work %(id)s of yours.") % {"id": work_id}, "not_found")
    return work


def lock_own_work(work_id: int, agent: Agent) -> AgentWork:
    work = (
        AgentWork.objects.select_for_update(of=("self",))
        .select_related("item", "queue", "channel")
        .filter(pk=work_id)
        .first()
    )
    if work is None or work.agent_id != agent.pk:
        raise NotFound(_("No work %(id)s of yours.") % {"id": work_id}, "not_found")
    return work


def lock_own_work_in_state(work_id: int, agent: Agent, state: str, refusal: str) -> AgentWork:
    """Lock the agent, then their work, and check it is in ``state``; else ``Conflict`` with
    ``refusal`` (a translated message with a ``%(state)s`` placeholder)."""
    lock_agents([agent.pk])
    work = lock_own_work(work_id, agent)
    if work.state != state:
        raise Conflict(refusal % {"state": work.get_state_display()}, work.state)
    return work
