"""Reads of routing state: payloads for consoles and the API, and why an item waits."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.db.models import Count, Max, Prefetch, Q, QuerySet, prefetch_related_objects
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from omnirouter import roles
from presence.models import Agent, PresenceStatus
from routing import engine
from routing.models import (
    LIVE_STATES,
    AgentSkill,
    AgentWork,
    AgentWorkState,
    ItemSkill,
    Queue,
    QueueMembership,
    WorkItem,
    WorkItemStatus,
)


def caller_agent(user: Any) -> Agent:
    """The agent record of a caller the ``IsAgent`` permission has let through."""
    return cast(Agent, roles.agent_of(user))


def work_payload(work: AgentWork) -> dict[str, Any]:
    """What a console needs to show one offer or assignment.

    ``transfer`` (who handed it on, their note) only when someone did. ``skills`` (what the
    item needs) only when the item's skills were prefetched (``live_work_for_agent``,
    ``with_item_skills``): events sent on every state change do not pay a query for them, and
    consoles keep what they were told before.
    """
    item = work.item
    payload = {
        "id": work.pk,
        "item_id": work.item_id,
        "state": work.state,
        "subject": item.subject,
        "queue": work.queue.name,
        "queue_id": work.queue_id,
        "channel": work.channel.key,
        "channel_label": work.channel.label,
        "units": engine.as_number(work.units),
        "pushed_at": work.pushed_at.isoformat(),
        "expires_at": work.expires_at.isoformat() if work.expires_at else None,
        "opened_at": work.opened_at.isoformat() if work.opened_at else None,
        "ended_at": work.ended_at.isoformat() if work.ended_at else None,
        "enqueued_at": work.enqueued_at.isoformat(),
        "why": (work.routing_reason or {}).get("text", ""),
        "payload": item.payload,
        "priority": item.priority,
    }
    if item.transfer_from or item.transfer_note:
        payload["transfer"] = {"from": item.transfer_from, "note": item.transfer_note}
    cache = getattr(item, "_prefetched_objects_cache", {})
    if "skills" in cache:
        payload["skills"] = [
            skill_need_payload(need.skill_id, need.skill.name, need.min_level, need.additional)
            for need in cache["skills"]
        ]
    return payload


def skill_need_payload(
    skill_id: int, name: str, min_level: Decimal, additional: bool
) -> dict[str, Any]:
    """One skill an item needs, as consoles show it (the minimum level with two decimals)."""
    return {
        "skill_id": skill_id,
        "name": name,
        "min_level": str(Decimal(min_level).quantize(Decimal("0.01"))),
        "additional": additional,
    }


def _item_skills_prefetch() -> Prefetch:
    return Prefetch("item__skills", queryset=ItemSkill.objects.select_related("skill"))


def with_item_skills(work: AgentWork) -> AgentWork:
    """``work`` with its item's skills loaded (one query), for a payload that shows them."""
    prefetch_related_objects([work], _item_skills_prefetch())
    return work


def live_work_for_agent(agent: Agent) -> QuerySet[AgentWork]:
    """The agent's offers and open work, oldest first, with the skills their items need."""
    return (
        AgentWork.objects.filter(agent=agent, state__in=LIVE_STATES)
        .select_related("item", "queue", "channel")
        .prefetch_related(_item_skills_prefetch())
        .order_by("pushed_at", "id")
    )


# The agent fields a presence payload is made of (``presence_payload`` takes a row of them).
PRESENCE_FIELDS = (
    "id",
    "status_id",
    "status__name",
    "status__is_online",
    "status_changed_at",
    "capacity",
    "used_capacity",
    "open_count",
)


def presence_payloads(agent_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Status and load of agents, for consoles and dashboards (one query)."""
    rows = Agent.objects.filter(pk__in=agent_ids).values(*PRESENCE_FIELDS)
    return {r["id"]: presence_payload(r) for r in rows}


def presence_payload(row: Mapping[str, Any]) -> dict[str, Any]:
    """One agent's status and load from a row of ``PRESENCE_FIELDS`` (for callers that have
    just read or written those fields and need not read them again)."""
    return {
        "agent_id": row["id"],
        "status_id": row["status_id"],
        "status": row["status__name"] or "Offline",
        "online": bool(row["status__is_online"]),
        "status_since": row["status_changed_at"].isoformat() if row["status_changed_at"] else None,
        "capacity": engine.as_number(row["capacity"]),
        "used_capacity": engine.as_number(row["used_capacity"]),
        "open_count": row["open_count"],
    }


def offer_limit(max_offers: int | None, auto_accept: bool) -> int | None:
    """The pacing limit in force: none for auto-accept agents (they never hold an offer)."""
    return None if auto_accept else max_offers


def pending_offers(agent_ids: Iterable[int]) -> dict[int, int]:
    """Unanswered offers (pushed) each of these agents holds; agents with none are left out.
    Read after the agents' rows are locked, it is exact: every offer is made and ended under
    its agent's lock."""
    ids = sorted(set(agent_ids))
    if not ids:
        return {}
    return dict(
        AgentWork.objects.filter(agent_id__in=ids, state=AgentWorkState.PUSHED)
        .values_list("agent_id")
        .annotate(n=Count("id"))
        .order_by()
    )


def agent_views(
    agents: QuerySet[Agent], *, now: datetime, with_skills: bool = True
) -> dict[int, engine.AgentView]:
    """The engine's view of ``agents`` (any queryset of them), by id: load, status channels,
    queues, skills, online, whether their console is live at ``now``, and for agents with an
    offer limit the offers they hold unanswered. Four queries whatever the number of agents
    (five when some have an offer limit); one fewer ``with_skills=False``, for a reader that
    asks no question about an item (``engine.has_room``)."""
    grace = timedelta(seconds=settings.CONSOLE_GRACE_SECONDS)
    rows = list(
        agents.order_by().values_list(
            "id",
            "status_id",
            "status__is_online",
            "capacity",
            "used_capacity",
            "open_count",
            "last_assigned_at",
            "console_seen_at",
            "presence_config__console_required",
            "presence_config__max_offers",
            "presence_config__auto_accept",
        )
    )
    if not rows:
        return {}
    limits = {r[0]: offer_limit(r[9], r[10]) for r in rows}
    pending = pending_offers(a for a, limit in limits.items() if limit is not None)
    ids = [r[0] for r in rows]
    queues: dict[int, set[int]] = defaultdict(set)
    for agent_id, queue_id in QueueMembership.objects.filter(agent_id__in=ids).values_list(
        "agent_id", "queue_id"
    ):
        queues[agent_id].add(queue_id)
    channels: dict[int, set[int]] = defaultdict(set)
    for status_id, channel_id in PresenceStatus.channels.through.objects.filter(
        presencestatus_id__in={r[1] for r in rows if r[1] is not None}
    ).values_list("presencestatus_id", "servicechannel_id"):
        channels[status_id].add(channel_id)
    skills = agent_skills(AgentSkill.objects.filter(agent_id__in=ids)) if with_skills else {}
    views = {}
    for row in rows:
        agent_id, status_id, online, capacity, used, open_count, last, seen, required = row[:9]
        views[agent_id] = engine.AgentView(
            id=agent_id,
            capacity=engine.whole_or_exact(capacity),
            used=engine.whole_or_exact(used),
            open_count=open_count,
            last_assigned_at=last,
            channel_ids=frozenset(channels.get(status_id, ())),
            queue_ids=frozenset(queues.get(agent_id, ())),
            online=bool(online),
            console_live=not required or (seen is not None and seen >= now - grace),
            skills=skills.get(agent_id, {}),
            pending_offers=pending.get(agent_id, 0),
            max_offers=limits[agent_id],
        )
    return views


def hundredths(level: Decimal) -> int:
    """A skill level as the engine counts it: 7.5 is 750."""
    return int(level * 100)


def agent_skills(rows: QuerySet[AgentSkill]) -> dict[int, dict[int, int]]:
    """agent id -> skill id -> level in hundredths, for these agent skill rows (one query)."""
    found: dict[int, dict[int, int]] = defaultdict(dict)
    for agent_id, skill_id, level in rows.order_by().values_list("agent_id", "skill_id", "level"):
        found[agent_id][skill_id] = hundredths(level)
    return found


def requirement(
    *,
    skill_id: int,
    min_level: int,
    additional: bool,
    drop_after_seconds: int | None,
    name: str,
    enqueued_at: datetime,
) -> engine.Requirement:
    """The engine's view of one requirement of an item (``min_level`` in hundredths): an
    additional one drops ``drop_after_seconds`` after the item entered its queue."""
    drops_at = None
    if additional and drop_after_seconds is not None:
        drops_at = enqueued_at + timedelta(seconds=drop_after_seconds)
    return engine.Requirement(
        skill_id=skill_id, min_level=min_level, additional=additional, drops_at=drops_at, name=name
    )


def item_requirements(items: Iterable[WorkItem]) -> dict[int, tuple[engine.Requirement, ...]]:
    """item id -> its requirements (in the order they were written), one query."""
    entered = {item.pk: item.enqueued_at for item in items}
    found: dict[int, list[engine.Requirement]] = defaultdict(list)
    if not entered:
        return {}
    rows = (
        ItemSkill.objects.filter(item_id__in=list(entered))
        .order_by("item_id", "id")
        .values_list(
            "item_id", "skill_id", "min_level", "additional", "drop_after_seconds", "skill__name"
        )
    )
    for item_id, skill_id, level, additional, drop_after, name in rows:
        found[item_id].append(
            requirement(
                skill_id=skill_id,
                min_level=hundredths(level),
                additional=additional,
                drop_after_seconds=drop_after,
                name=name,
                enqueued_at=entered[item_id],
            )
        )
    return {item_id: tuple(needs) for item_id, needs in found.items()}


def refusals(item_ids: Sequence[int]) -> dict[int, dict[int, datetime]]:
    """item id -> agent id -> when that agent last declined it or let its offer time out."""
    refused: dict[int, dict[int, datetime]] = defaultdict(dict)
    if not item_ids:
        return refused
    rows = (
        AgentWork.objects.filter(
            item_id__in=item_ids, state__in=[AgentWorkState.DECLINED, AgentWorkState.TIMED_OUT]
        )
        .values("item_id", "agent_id")
        .annotate(last=Max("ended_at"))
        .order_by()
    )
    for row in rows:
        refused[row["item_id"]][row["agent_id"]] = row["last"]
    return refused


def online_preferred(agent_ids: Iterable[int]) -> set[tuple[int, int]]:
    """(agent, channel) pairs of these preferred agents who are online for that channel now:
    an item waits for its preferred agent only while they are."""
    wanted = {a for a in agent_ids if a}
    if not wanted:
        return set()
    rows = Agent.objects.filter(id__in=wanted, status__is_online=True).values_list(
        "id", "status__channels"
    )
    return {(agent_id, channel_id) for agent_id, channel_id in rows if channel_id}


def item_view(item: WorkItem, *, now: datetime) -> engine.ItemView:
    """The engine's view of one item, as a routing pass would see it."""
    held = (item.preferred_agent_id, item.channel_id) in online_preferred(
        [item.preferred_agent_id] if item.preferred_agent_id else []
    )
    return engine.ItemView(
        id=item.pk,
        queue_id=item.queue_id,
        channel_id=item.channel_id,
        routing_priority=item.routing_priority,
        priority=item.priority,
        secondary_priority=item.secondary_priority,
        enqueued_at=item.enqueued_at,
        routing_model=item.queue.routing_config.routing_model,
        size_units=item.size_units,
        size_percent=item.size_percent,
        refused_by=refusals([item.pk]).get(item.pk, {}),
        preferred_agent_id=item.preferred_agent_id if held else None,
        preferred_until=item.preferred_until,
        requirements=item_requirements([item]).get(item.pk, ()),
    )


def explain_item(item: WorkItem, *, now: datetime) -> list[tuple[Agent, engine.Ineligible | None]]:
    """Every member of the item's queue, by name, with ``None`` (the router may offer it to
    them) or the engine's reason why not."""
    return _explain_members(item, now=now)[2]


def _explain_members(
    item: WorkItem, *, now: datetime
) -> tuple[
    engine.ItemView,
    dict[int, engine.AgentView],
    list[tuple[Agent, engine.Ineligible | None]],
]:
    members = Agent.objects.filter(memberships__queue_id=item.queue_id)
    views = agent_views(members, now=now)
    view = item_view(item, now=now)
    why = engine.explain(
        view,
        views.values(),
        now=now,
        reoffer_cooldown=timedelta(seconds=settings.ROUTING_REOFFER_COOLDOWN_SECONDS),
    )
    agents = members.select_related("user").order_by("user__username", "id")
    return view, views, [(agent, why[agent.pk]) for agent in agents if agent.pk in why]


def _clock(at: datetime | None) -> str:
    return timezone.localtime(at).strftime("%H:%M:%S") if at else ""


def reason_text(why: engine.Ineligible, *, channel: str) -> str:
    """One agent's reason, e.g. "at capacity (1 spare unit, needs 2)"."""
    reason = why.reason
    if reason is engine.Reason.NOT_MEMBER:
        return _("not a member of the queue")
    if reason is engine.Reason.SKILL and why.skill is not None:
        if why.level is None:
            return _("lacks %(skill)s") % {"skill": _skill_name(why.skill)}
        return _("has %(skill)s at level %(level)s, needs %(minimum)s") % {
            "skill": _skill_name(why.skill),
            "level": engine.level_text(why.level),
            "minimum": engine.level_text(why.skill.min_level),
        }
    if reason is engine.Reason.OFFLINE:
        return _("offline")
    if reason is engine.Reason.CHANNEL:
        return _("not available for %(channel)s") % {"channel": channel}
    if reason is engine.Reason.NO_CONSOLE:
        return _("no live console")
    if reason is engine.Reason.CAPACITY:
        return _("at capacity (%(spare)s spare, needs %(needed)s)") % {
            "spare": engine.as_number(why.spare or 0),
            "needed": engine.as_number(why.needed or 0),
        }
    if reason is engine.Reason.PACING:
        return ngettext(
            "holds %(count)d unanswered offer, the most their configuration allows",
            "holds %(count)d unanswered offers, the most their configuration allows",
            why.offers or 0,
        ) % {"count": why.offers or 0}
    if reason is engine.Reason.REFUSED:
        return _("refused it (offered again after %(time)s)") % {"time": _clock(why.until)}
    if reason is engine.Reason.REFUSED_OTHERS_FIRST:
        return _("refused it (others are offered it first)")
    return _("held for its preferred agent until %(time)s") % {"time": _clock(why.until)}


def _reason_count_text(
    reason: engine.Reason, count: int, whys: list[engine.Ineligible], channel: str
) -> str:
    if reason is engine.Reason.REFUSED:
        first = min(w.until for w in whys if w.until)
        return _("%(count)d refused it (offered again after %(time)s)") % {
            "count": count,
            "time": _clock(first),
        }
    if reason is engine.Reason.CAPACITY:
        return _("%(count)d at capacity") % {"count": count}
    texts = {
        engine.Reason.NOT_MEMBER: _("%(count)d not a member"),
        engine.Reason.SKILL: _("%(count)d without a required skill"),
        engine.Reason.OFFLINE: _("%(count)d offline"),
        engine.Reason.CHANNEL: _("%(count)d not available for %(channel)s"),
        engine.Reason.NO_CONSOLE: _("%(count)d without a live console"),
        engine.Reason.PACING: _("%(count)d at their limit of unanswered offers"),
        engine.Reason.REFUSED_OTHERS_FIRST: _("%(count)d refused it (others first)"),
        engine.Reason.PREFERRED_AGENT: _("%(count)d not its preferred agent"),
    }
    return texts[reason] % {"count": count, "channel": channel}


def explain_wait(item: WorkItem, *, now: datetime | None = None) -> str:
    """Why an item is still waiting, in words a supervisor can act on: the engine's reason for
    every member of its queue, counted, e.g. "No one can take it now: 2 offline, 1 at capacity,
    1 refused it (offered again after 12:03:04)."
    """
    now = now or timezone.now()
    if item.status != WorkItemStatus.WAITING:
        return _("Not waiting: %(status)s.") % {"status": item.get_status_display()}
    view, views, members = _explain_members(item, now=now)
    if not members:
        return _("The queue has no members.")
    eligible = [agent for agent, why in members if why is None]
    if eligible:
        return ngettext(
            "%(count)d eligible agent has room: it will be offered on the next routing pass.",
            "%(count)d eligible agents have room: it will be offered on the next routing pass.",
            len(eligible),
        ) % {"count": len(eligible)}
    by_reason: dict[engine.Reason, list[engine.Ineligible]] = defaultdict(list)
    for _agent, why in members:
        assert why is not None
        by_reason[why.reason].append(why)
    channel = str(item.channel)
    parts = [
        _reason_count_text(reason, len(whys), whys, channel)
        for reason, whys in sorted(
            by_reason.items(), key=lambda kv: list(engine.Reason).index(kv[0])
        )
        if reason is not engine.Reason.PREFERRED_AGENT
    ]
    needs = _needs_text(view, views, now)
    preferred = by_reason.get(engine.Reason.PREFERRED_AGENT)
    if preferred:
        lead = _("Held for its preferred agent until %(time)s") % {
            "time": _clock(preferred[0].until)
        }
        text = f"{lead}: {', '.join(parts)}." if parts else f"{lead}."
    else:
        text = _("No one can take it now: %(reasons)s.") % {"reasons": ", ".join(parts)}
    return f"{text} {needs}" if needs else text


def _skill_name(need: engine.Requirement) -> str:
    return need.name or _("skill %(id)s") % {"id": need.skill_id}


def _needs_text(item: engine.ItemView, views: Mapping[int, engine.AgentView], now: datetime) -> str:
    """The item's requirements in force, each with how the online members fall short of it,
    and when an additional one drops: "Needs Billing ≥ 5: 2 online agents lack it, 1 has level
    3; Japanese (additional, drops at 10:42:00)." Empty without requirements in force."""
    online = [v for v in views.values() if v.online]
    segments = []
    for need in engine.in_force(item.requirements, now):
        name = _skill_name(need)
        if need.min_level:
            name = _("%(skill)s ≥ %(level)s") % {
                "skill": name,
                "level": engine.level_text(need.min_level),
            }
        if need.additional and need.drops_at is not None:
            name = _("%(skill)s (additional, drops at %(time)s)") % {
                "skill": name,
                "time": _clock(need.drops_at),
            }
        lacking = sum(1 for v in online if need.skill_id not in v.skills)
        below = sorted(
            v.skills[need.skill_id]
            for v in online
            if need.skill_id in v.skills and v.skills[need.skill_id] < need.min_level
        )
        details = []
        if lacking:
            details.append(
                ngettext(
                    "%(count)d online agent lacks it",
                    "%(count)d online agents lack it",
                    lacking,
                )
                % {"count": lacking}
            )
        if below:
            details.append(
                ngettext(
                    "%(count)d has level %(levels)s", "%(count)d have levels %(levels)s", len(below)
                )
                % {"count": len(below), "levels": ", ".join(engine.level_text(b) for b in below)}
            )
        segments.append(f"{name}: {', '.join(details)}" if details else name)
    if not segments:
        return ""
    return _("Needs %(requirements)s.") % {"requirements": "; ".join(segments)}


def visible_work_items(user: Any) -> QuerySet[WorkItem]:
    """Items a user may read and cancel through the API: admins all; supervisors those in the
    queues they supervise; intake clients those they created."""
    if roles.is_admin(user):
        return WorkItem.objects.all()
    visible = Q(queue__in=supervised_queues(user))
    if roles.is_intake(user):
        visible |= Q(created_by=user)
    return WorkItem.objects.filter(visible)


def supervised_queues(user: Any) -> QuerySet[Queue]:
    """Queues the user may watch and act on: all for admins, their own for supervisors."""
    if roles.is_admin(user):
        return Queue.objects.all()
    if roles.in_group(user, roles.SUPERVISOR):
        return Queue.objects.filter(supervisors=user)
    return Queue.objects.none()


def hard_refusal(item: WorkItem, agent: Agent, *, now: datetime) -> tuple[str, str] | None:
    """Why ``agent`` could not take ``item`` now whatever the router's choices (the engine's
    ``hard_ineligibility``: the rule a supervisor's push and a transfer to a person obey), as
    (reason code, words), or ``None`` when they could."""
    view = agent_views(Agent.objects.filter(pk=agent.pk), now=now)[agent.pk]
    why = engine.hard_ineligibility(item_view(item, now=now), view, now=now)
    if why is None:
        return None
    return why.reason.value, reason_text(why, channel=str(item.channel))


def visible_agent_skills(user: Any) -> QuerySet[AgentSkill]:
    """Agents' skills a user may read: admins all; supervisors those of the agents in the
    queues they supervise; an agent their own."""
    rows = AgentSkill.objects.select_related("skill")
    if roles.is_admin(user):
        return rows
    visible = Q(agent__memberships__queue__in=supervised_queues(user))
    agent = roles.agent_of(user)
    if agent is not None:
        visible |= Q(agent=agent)
    return rows.filter(visible).distinct()


def agents_in_scope(user: Any) -> QuerySet[Agent]:
    """Agents whose skills a user may change: all for admins, the members of their queues for
    supervisors."""
    if roles.is_admin(user):
        return Agent.objects.all()
    return Agent.objects.filter(memberships__queue__in=supervised_queues(user)).distinct()
