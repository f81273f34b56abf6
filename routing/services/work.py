"""An agent's actions on their offers and work: accept, decline, close, transfer."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from omnirouter.errors import Conflict, DomainError, Forbidden
from presence.models import Agent
from routing.dispatch import request_routing
from routing.models import (
    ActionLog,
    AgentWork,
    AgentWorkState,
    Queue,
    Skill,
    WorkItem,
    WorkItemStatus,
)
from routing.services import records, skills
from routing.services.events import work_changed
from routing.services.locks import (
    get_own_work,
    lock_agents,
    lock_item,
    lock_own_work_in_state,
)
from routing.services.transitions import (
    apply_status,
    end_work,
    offer_directly,
    refuse_unless_able,
    requeue,
    return_item,
)

logger = logging.getLogger(__name__)


def accept_work(*, work_id: int, agent: Agent, now: datetime | None = None) -> AgentWork:
    """Accept a pushed offer: a compare-and-set on (still pushed, not expired, this agent).

    The record behind the item (``records.register``) is told in the same transaction.

    A duplicate or late accept changes nothing and raises ``Conflict`` saying why.
    """
    now = now or timezone.now()
    with transaction.atomic():
        changed = AgentWork.objects.filter(
            id=work_id, agent=agent, state=AgentWorkState.PUSHED, expires_at__gt=now
        ).update(state=AgentWorkState.OPENED, opened_at=now)
        work = get_own_work(work_id, agent)
        if not changed:
            if work.state == AgentWorkState.OPENED:
                raise Conflict(_("You have already accepted this work."), "already_accepted")
            if work.state == AgentWorkState.PUSHED:
                raise Conflict(_("This offer has timed out."), "expired")
            raise Conflict(
                _("This offer is no longer open (%(state)s).")
                % {"state": work.get_state_display()},
                work.state,
            )
        WorkItem.objects.filter(id=work.item_id).update(status=WorkItemStatus.ASSIGNED)
        records.item_changed_one(records.ACCEPTED, work.item, agent_id=agent.pk, now=now)
        work_changed(work)
    return work


def decline_work(
    *, work_id: int, agent: Agent, reason: str = "", now: datetime | None = None
) -> AgentWork:
    """Decline a pushed offer. The item goes back in line with its original age, to be offered to
    someone else; the agent's status changes if their presence configuration says so."""
    now = now or timezone.now()
    config = agent.presence_config
    if not config.allow_decline:
        raise Forbidden(
            _("Your presence configuration does not allow declining work."), "no_decline"
        )
    reason = (reason or "").strip()
    if config.require_decline_reason and not reason:
        raise DomainError(_("A reason is required to decline this work."), "reason_required")
    allowed = list(config.decline_reasons.filter(active=True).values_list("label", flat=True))
    if reason and allowed and reason not in allowed:
        raise DomainError(
            _("Unknown decline reason. Choose one of: %(reasons)s.")
            % {"reasons": ", ".join(allowed)},
            "reason",
        )
    with transaction.atomic():
        work = lock_own_work_in_state(
            work_id,
            agent,
            AgentWorkState.PUSHED,
            _("This work can no longer be declined (%(state)s)."),
        )
        end_work(work, AgentWorkState.DECLINED, now=now, reason=reason)
        return_item(work.item_id)
        if config.status_after_decline_id:
            apply_status(agent.pk, config.status_after_decline_id, now=now)
        request_routing()
    return work


def close_work(
    *, work_id: int, agent: Agent, note: str = "", now: datetime | None = None
) -> AgentWork:
    """Close accepted work: the item is done, the agent's capacity is freed, the record behind
    the item is told (same transaction)."""
    now = now or timezone.now()
    with transaction.atomic():
        work = lock_own_work_in_state(
            work_id,
            agent,
            AgentWorkState.OPENED,
            _("Only accepted work can be closed (%(state)s)."),
        )
        end_work(work, AgentWorkState.CLOSED, now=now, note=note)
        WorkItem.objects.filter(id=work.item_id).update(status=WorkItemStatus.CLOSED, ended_at=now)
        records.item_changed_one(records.CLOSED, work.item, agent_id=work.agent_id, now=now)
        request_routing()
    return work


def transfer_work(
    *, work_id: int, agent: Agent, queue: Queue, note: str = "", now: datetime | None = None
) -> AgentWork:
    """Hand accepted work to another queue: it waits there as a new entry, routed afresh; the
    note goes with the item to the next agent; the record behind the item is told (same
    transaction)."""
    now = now or timezone.now()
    with transaction.atomic():
        work = lock_own_work_in_state(
            work_id,
            agent,
            AgentWorkState.OPENED,
            _("Only accepted work can be transferred (%(state)s)."),
        )
        end_work(work, AgentWorkState.TRANSFERRED, now=now, note=note or f"To {queue.name}")
        requeue(work.item_id, queue, now=now)
        _hand_over(work.item_id, agent, note)
        records.item_changed_one(records.REQUEUED, work.item, agent_id=None, now=now)
        request_routing()
    return work


def transfer_work_to_agent(
    *,
    work_id: int,
    agent: Agent,
    to_agent: Agent,
    note: str = "",
    actor: AbstractBaseUser | None = None,
    now: datetime | None = None,
) -> AgentWork:
    """Hand accepted work to a named agent: a direct offer to them, in the item's queue, as a
    new entry (their push timeout applies; on decline or timeout it is routed to anyone in the
    queue). They must be able to take it now - the engine's hard rules, as for a supervisor's
    push (``Conflict`` with the reason otherwise: not a member, skill, offline, channel, no
    console, capacity, pacing); the offer takes the item's exact size for them
    (``engine.size_for``). The note goes with the item; the hand-over is logged in
    ``ActionLog`` with ``actor`` (the holding agent's user unless a supervisor does it for
    them)."""
    now = now or timezone.now()
    actor_id = agent.user_id if actor is None else actor.pk
    by_supervisor = actor is not None and actor.pk != agent.user_id
    if to_agent.pk == agent.pk:
        raise DomainError(_("You already hold this work."), "same_agent")
    with transaction.atomic():
        # Both agents' rows, in id order (the one lock order), before the work and the item.
        lock_agents([agent.pk, to_agent.pk])
        work = lock_own_work_in_state(
            work_id,
            agent,
            AgentWorkState.OPENED,
            _("Only accepted work can be transferred (%(state)s)."),
        )
        item = lock_item(work.item_id)
        target = Agent.objects.select_related("presence_config", "user").get(pk=to_agent.pk)
        refuse_unless_able(item, target, now=now)
        end_work(work, AgentWorkState.TRANSFERRED, now=now, note=note or f"To {target}")
        requeue(item.pk, item.queue, now=now)
        _hand_over(item.pk, agent, note)
        records.item_changed_one(records.REQUEUED, work.item, agent_id=None, now=now)
        item.refresh_from_db()
        offered = offer_directly(
            item,
            target,
            now=now,
            reason={
                "rule": "transfer",
                "from_agent": agent.pk,
                "text": (
                    f"Transferred to you from {agent} by supervisor {actor}."
                    if by_supervisor
                    else f"Transferred to you by {agent}."
                ),
            },
        )
        ActionLog.objects.create(
            at=now,
            actor_id=actor_id,
            verb="transfer_to_agent",
            item_id=item.pk,
            agent=target,
            detail={"from_agent": agent.pk, "work_id": offered.pk},
        )
        request_routing()
    return work


def transfer_work_to_skill(
    *,
    work_id: int,
    agent: Agent,
    skill: Skill,
    min_level: Decimal = Decimal("0"),
    queue: Queue | None = None,
    note: str = "",
    now: datetime | None = None,
) -> AgentWork:
    """Hand accepted work to anyone with ``skill`` (at ``min_level`` or above): it waits as a
    new entry in ``queue`` (or its own) with that skill required (``skills.require_skills``,
    the one writer of requirements), routed afresh; the note goes with the item."""
    now = now or timezone.now()
    wanted = skills.need(skill.pk, min_level)
    with transaction.atomic():
        work = lock_own_work_in_state(
            work_id,
            agent,
            AgentWorkState.OPENED,
            _("Only accepted work can be transferred (%(state)s)."),
        )
        target = queue or Queue.objects.select_related("routing_config").get(pk=work.queue_id)
        end_work(
            work,
            AgentWorkState.TRANSFERRED,
            now=now,
            note=note or f"To anyone with {skill.name} in {target.name}",
        )
        requeue(work.item_id, target, now=now)
        skills.require_skills(work.item, [wanted])
        _hand_over(work.item_id, agent, note)
        records.item_changed_one(records.REQUEUED, work.item, agent_id=None, now=now)
        request_routing()
    return work


def _hand_over(item_id: int, agent: Agent, note: str) -> None:
    WorkItem.objects.filter(pk=item_id).update(transfer_from=str(agent), transfer_note=note)
