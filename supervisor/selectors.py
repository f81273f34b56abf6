"""Reads for supervisors: the dashboard snapshot, queue metrics and trend history.

Every figure is an aggregate computed by the database over its own records (work items and
agent work timestamps). A snapshot is a fixed number of queries, whatever the number of items,
agents or days of history: grouped aggregates over indexes, never a Python loop over history.
Python only shapes the aggregated rows (one per queue, one per agent, one per live work).

Longer than ~600 lines on purpose: every figure of the snapshot, its query and its definition
below sit in one module, so what a supervisor sees and how it is computed are read together.

Definitions (all "today" figures use the day in ``settings.TIME_ZONE`` that contains ``now``):

- waiting / offered / assigned: items in the queue in that status now.
- longest wait, average wait: over items waiting now, from when they entered the queue
  (``WorkItem.enqueued_at``, which a decline or timeout keeps, so a re-queued item keeps its age).
- answered today: agent work of the queue accepted today (``opened_at`` today). Each entry of an
  item into a queue is accepted at most once, so this counts answered entries.
- speed to answer: from entering the queue to acceptance (``opened_at - enqueued_at`` of the
  accepted agent work), averaged over answered today. Time spent on declined or timed-out offers
  counts: the customer was waiting all along.
- handled today: agent work of the queue closed today; handle time is accepted -> closed.
- abandoned today: items of the queue canceled today (only waiting or offered items can be).
- service level today: answered within the target / (answered + abandoned after the target).
  An item whose customer left before the target is not held against the queue; one who left
  after waiting longer than the target is (the usual contact-center definition). ``None`` when
  nothing was answered or abandoned yet.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import reduce
from typing import Any

from django.conf import settings
from django.db.models import (
    Avg,
    Count,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    Min,
    OuterRef,
    Q,
    Value,
)
from django.db.models.lookups import GreaterThan, LessThanOrEqual
from django.utils import timezone
from django.utils.translation import gettext as _

from omnirouter.errors import Conflict, DomainError, NotFound
from omnirouter.roles import is_admin
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
    Skill,
    WorkItem,
    WorkItemStatus,
)
from routing.selectors import agent_views, explain_item, reason_text, supervised_queues
from supervisor.models import QueueSample

# --- Scope and time ----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueInfo:
    id: int
    name: str
    target_seconds: int
    goal_percent: int


@dataclass(frozen=True)
class Scope:
    """What one user may watch: their queues, and whether they see every agent (admins)."""

    queues: tuple[QueueInfo, ...]
    all_agents: bool

    @property
    def queue_ids(self) -> list[int]:
        return [q.id for q in self.queues]


def scope_for(user: Any) -> Scope:
    """The queues ``user`` supervises (every queue for admins), with their service-level terms."""
    rows = (
        supervised_queues(user)
        .order_by("name", "id")
        .values(
            "id",
            "name",
            "routing_config__service_level_target_seconds",
            "routing_config__service_level_goal_percent",
        )
    )
    return Scope(
        queues=tuple(_queue_info(r) for r in rows),
        all_agents=is_admin(user),
    )


def all_queues_scope() -> Scope:
    """Every queue: for the sampler, which records the whole center."""
    rows = Queue.objects.order_by("name", "id").values(
        "id",
        "name",
        "routing_config__service_level_target_seconds",
        "routing_config__service_level_goal_percent",
    )
    return Scope(queues=tuple(_queue_info(r) for r in rows), all_agents=True)


def _queue_info(row: Mapping[str, Any]) -> QueueInfo:
    return QueueInfo(
        id=row["id"],
        name=row["name"],
        target_seconds=row["routing_config__service_level_target_seconds"],
        goal_percent=row["routing_config__service_level_goal_percent"],
    )


def day_start(now: datetime) -> datetime:
    """Midnight that starts ``now``'s day in the configured TIME_ZONE, as an aware datetime."""
    tz = timezone.get_default_timezone()
    local_day = timezone.localtime(now, tz).date()
    return timezone.make_aware(datetime.combine(local_day, time.min), tz)


def _seconds(delta: timedelta | None) -> int | None:
    """Whole seconds, never negative (writers' clocks may differ by a little)."""
    if delta is None:
        return None
    return max(0, int(delta.total_seconds()))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _between(end: str, start: str) -> ExpressionWrapper:
    return ExpressionWrapper(F(end) - F(start), output_field=DurationField())


def _within_target(wait: ExpressionWrapper, queues: Iterable[QueueInfo], *, late: bool) -> Q:
    """``wait <= target`` (or ``> target`` when ``late``) with each queue's own target.

    Grouped by distinct target so the condition stays short however many queues share one; a
    lookup on a duration (not datetime arithmetic) keeps it portable to SQLite (embedded run).
    """
    by_target: dict[int, list[int]] = defaultdict(list)
    for queue in queues:
        by_target[queue.target_seconds].append(queue.id)
    lookup = GreaterThan if late else LessThanOrEqual
    return reduce(
        operator.or_,
        (
            Q(lookup(wait, timedelta(seconds=target)), queue_id__in=ids)
            for target, ids in sorted(by_target.items())
        ),
    )


# --- Queues ------------------------------------------------------------------------------------


def queue_metrics(scope: Scope, now: datetime) -> list[dict[str, Any]]:
    """One row per queue in ``scope`` with every queue figure (see the module docstring).

    Five grouped queries, each on an index: waiting items by (queue, entered queue); offered
    and assigned items by (queue, status); agent work accepted today by ``opened_at``; agent
    work closed today by ``ended_at``; items canceled today by ``ended_at``. Cost grows with
    the backlog, the queues and today's traffic, not with older history.
    """
    queue_ids = scope.queue_ids
    if not queue_ids:
        return []
    since = day_start(now)
    live = _live_item_stats(queue_ids, now)
    answered = _answered_stats(scope, since, now)
    handled = _handled_stats(queue_ids, since, now)
    abandoned = _abandoned_stats(scope, since, now)

    rows = []
    for queue in scope.queues:
        lv = live.get(queue.id, {})
        an = answered.get(queue.id, {})
        hd = handled.get(queue.id, {})
        ab = abandoned.get(queue.id, {})
        oldest = lv.get("oldest")
        n_answered = an.get("answered", 0)
        n_within = an.get("within", 0)
        n_abandoned_late = ab.get("late", 0)
        sl = _service_level(n_within, n_answered, n_abandoned_late)
        rows.append(
            {
                "id": queue.id,
                "name": queue.name,
                "waiting": lv.get("waiting", 0),
                "offered": lv.get("offered", 0),
                "assigned": lv.get("assigned", 0),
                "oldest_enqueued_at": _iso(oldest),
                "longest_wait_seconds": _seconds(now - oldest) if oldest else 0,
                "average_wait_seconds": _seconds(lv.get("average_wait")) or 0,
                "answered_today": n_answered,
                "answered_within_target_today": n_within,
                "average_speed_to_answer_seconds": _seconds(an.get("asa")),
                "handled_today": hd.get("handled", 0),
                "average_handle_seconds": _seconds(hd.get("aht")),
                "abandoned_today": ab.get("abandoned", 0),
                "abandoned_after_target_today": n_abandoned_late,
                "service_level_percent": sl,
                "service_level_target_seconds": queue.target_seconds,
                "service_level_goal_percent": queue.goal_percent,
                "service_level_met": None if sl is None else sl >= queue.goal_percent,
            }
        )
    return rows


def _service_level(within: int, answered: int, abandoned_late: int) -> float | None:
    offered = answered + abandoned_late
    if not offered:
        return None
    return round(100 * within / offered, 1)


def _live_item_stats(queue_ids: list[int], now: datetime) -> dict[int, dict[str, Any]]:
    """Waiting count, oldest and average wait per queue, then offered and assigned counts.

    Two queries rather than one with filters: the first reads only the partial index of
    waiting items (queue, entered queue), the second the (queue, status) index; neither touches
    the table rows, and neither reads the ended items that make up most of the table.
    """
    wait = ExpressionWrapper(Value(now) - F("enqueued_at"), output_field=DurationField())
    stats: dict[int, dict[str, Any]] = defaultdict(dict)
    waiting = (
        WorkItem.objects.filter(queue_id__in=queue_ids, status=WorkItemStatus.WAITING)
        .values("queue_id")
        .annotate(waiting=Count("id"), oldest=Min("enqueued_at"), average_wait=Avg(wait))
        .order_by()
    )
    for row in waiting:
        stats[row["queue_id"]].update(row)
    live = (
        WorkItem.objects.filter(
            queue_id__in=queue_ids,
            status__in=[WorkItemStatus.OFFERED, WorkItemStatus.ASSIGNED],
        )
        .values("queue_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for live_row in live:
        stats[live_row["queue_id"]][live_row["status"]] = live_row["n"]
    return stats


def _answered_stats(scope: Scope, since: datetime, now: datetime) -> dict[int, Mapping[str, Any]]:
    speed = _between("opened_at", "enqueued_at")
    rows = (
        AgentWork.objects.filter(
            queue_id__in=scope.queue_ids, opened_at__gte=since, opened_at__lte=now
        )
        .values("queue_id")
        .annotate(
            answered=Count("id"),
            within=Count("id", filter=_within_target(speed, scope.queues, late=False)),
            asa=Avg(speed),
        )
        .order_by()
    )
    return {row["queue_id"]: row for row in rows}


def _handled_stats(
    queue_ids: list[int], since: datetime, now: datetime
) -> dict[int, Mapping[str, Any]]:
    rows = (
        AgentWork.objects.filter(
            queue_id__in=queue_ids,
            state=AgentWorkState.CLOSED,
            ended_at__gte=since,
            ended_at__lte=now,
        )
        .values("queue_id")
        .annotate(handled=Count("id"), aht=Avg(_between("ended_at", "opened_at")))
        .order_by()
    )
    return {row["queue_id"]: row for row in rows}


def _abandoned_stats(scope: Scope, since: datetime, now: datetime) -> dict[int, Mapping[str, Any]]:
    waited = _between("ended_at", "enqueued_at")
    rows = (
        WorkItem.objects.filter(
            queue_id__in=scope.queue_ids,
            status=WorkItemStatus.CANCELED,
            ended_at__gte=since,
            ended_at__lte=now,
        )
        .values("queue_id")
        .annotate(
            abandoned=Count("id"),
            late=Count("id", filter=_within_target(waited, scope.queues, late=True)),
        )
        .order_by()
    )
    return {row["queue_id"]: row for row in rows}


# --- Agents and their work -----------------------------------------------------------------------


def _scoped_agents(scope: Scope):  # -> QuerySet[Agent]
    agents = Agent.objects.all()
    if not scope.all_agents:
        agents = agents.filter(
            Exists(
                QueueMembership.objects.filter(
                    agent_id=OuterRef("pk"), queue_id__in=scope.queue_ids
                )
            )
        )
    return agents


def live_work(scope: Scope, now: datetime) -> list[dict[str, Any]]:
    """Every live offer and assignment in the scope's queues, longest in its state first."""
    if not scope.queue_ids:
        return []
    rows = (
        AgentWork.objects.filter(state__in=LIVE_STATES, queue_id__in=scope.queue_ids)
        .order_by("id")
        .values(
            "id",
            "item_id",
            "item__subject",
            "item__priority",
            "agent_id",
            "agent__user__username",
            "agent__user__first_name",
            "agent__user__last_name",
            "queue_id",
            "queue__name",
            "channel__key",
            "channel__label",
            "state",
            "units",
            "pushed_at",
            "opened_at",
            "expires_at",
            "enqueued_at",
            "routing_reason",
            "auto_accepted",
        )
    )
    labels = dict(AgentWorkState.choices)
    work = []
    for r in rows:
        since = r["opened_at"] if r["state"] == AgentWorkState.OPENED else r["pushed_at"]
        work.append(
            {
                "id": r["id"],
                "item_id": r["item_id"],
                "subject": r["item__subject"],
                "priority": r["item__priority"],
                "agent_id": r["agent_id"],
                "agent": _person(
                    r["agent__user__first_name"],
                    r["agent__user__last_name"],
                    r["agent__user__username"],
                ),
                "queue_id": r["queue_id"],
                "queue": r["queue__name"],
                "channel": r["channel__key"],
                "channel_label": r["channel__label"],
                "state": r["state"],
                "state_label": str(labels.get(r["state"], r["state"])),
                "units": engine.as_number(r["units"]),
                "state_since": _iso(since),
                "seconds_in_state": _seconds(now - since) if since else 0,
                "expires_at": _iso(r["expires_at"]),
                "enqueued_at": _iso(r["enqueued_at"]),
                "why": (r["routing_reason"] or {}).get("text", ""),
                "auto_accepted": r["auto_accepted"],
            }
        )
    work.sort(key=lambda w: (-w["seconds_in_state"], w["id"]))
    return work


def agent_metrics(scope: Scope, now: datetime, work: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per agent the scope shows: status, load, open work and today's figures.

    ``work`` is the scope's live work (from ``live_work``): an agent's open items are listed only
    from queues the viewer supervises; their used capacity counts everything they hold.
    """
    if not scope.queue_ids and not scope.all_agents:
        return []
    since = day_start(now)
    agents = _scoped_agents(scope)
    rows = list(
        agents.order_by("user__username").values(
            "id",
            "user__username",
            "user__first_name",
            "user__last_name",
            "status_id",
            "status__name",
            "status_changed_at",
            "last_assigned_at",
        )
    )
    # Online, connected, load and "room for more" as the router sees them (skills are a
    # question about an item, not asked here).
    views = agent_views(agents, now=now, with_skills=False)
    in_scope = set(scope.queue_ids)
    day = _agent_day_stats(scope, agents, since, now)
    skills = _agent_skills(agents)
    open_items: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for w in work:
        open_items[w["agent_id"]].append(
            {
                "work_id": w["id"],
                "item_id": w["item_id"],
                "subject": w["subject"],
                "queue": w["queue"],
                "state": w["state"],
                "state_label": w["state_label"],
                "seconds_in_state": w["seconds_in_state"],
            }
        )

    result = []
    for r in rows:
        view = views[r["id"]]
        stats = day.get(r["id"], {})
        changed = r["status_changed_at"]
        result.append(
            {
                "id": r["id"],
                "username": r["user__username"],
                "name": _person(r["user__first_name"], r["user__last_name"], r["user__username"]),
                "status_id": r["status_id"],
                "status": r["status__name"],
                "online": view.online,
                "connected": view.console_live,
                "status_since": _iso(changed),
                "seconds_in_status": _seconds(now - changed) if changed else None,
                "capacity": engine.as_number(view.capacity),
                "used_capacity": engine.as_number(view.used),
                "spare_capacity": engine.as_number(view.spare),
                "open_count": view.open_count,
                "has_room": engine.has_room(view),
                "queue_ids": sorted(view.queue_ids & in_scope),
                "open_items": sorted(
                    open_items.get(r["id"], []), key=lambda i: -i["seconds_in_state"]
                ),
                "handled_today": stats.get("handled", 0),
                "declined_today": stats.get("declined", 0),
                "timed_out_today": stats.get("timed_out", 0),
                "average_handle_seconds": _seconds(stats.get("aht")),
                "last_assigned_at": _iso(r["last_assigned_at"]),
                "skills": skills.get(r["id"], []),
            }
        )
    return result


def _agent_skills(agents) -> dict[int, list[dict[str, Any]]]:  # agents: QuerySet[Agent]
    """Each agent's skills and levels, by agent id (one query)."""
    by_agent: dict[int, list[dict[str, Any]]] = defaultdict(list)
    rows = (
        AgentSkill.objects.filter(agent__in=agents)
        .order_by("agent_id", "skill__name", "id")
        .values_list("agent_id", "id", "skill_id", "skill__name", "level")
    )
    for agent_id, row_id, skill_id, name, level in rows:
        by_agent[agent_id].append(
            {"id": row_id, "skill_id": skill_id, "name": name, "level": str(level)}
        )
    return by_agent


def _agent_day_stats(
    scope: Scope, agents, since: datetime, now: datetime
) -> dict[int, Mapping[str, Any]]:
    """Declined, timed out and closed today per agent: one grouped query on ``ended_at``."""
    closed = Q(state=AgentWorkState.CLOSED)
    works = AgentWork.objects.filter(
        ended_at__gte=since,
        ended_at__lte=now,
        state__in=[AgentWorkState.CLOSED, AgentWorkState.DECLINED, AgentWorkState.TIMED_OUT],
    )
    if not scope.all_agents:
        works = works.filter(agent__in=agents)
    rows = (
        works.values("agent_id")
        .annotate(
            handled=Count("id", filter=closed),
            declined=Count("id", filter=Q(state=AgentWorkState.DECLINED)),
            timed_out=Count("id", filter=Q(state=AgentWorkState.TIMED_OUT)),
            aht=Avg(_between("ended_at", "opened_at"), filter=closed),
        )
        .order_by()
    )
    return {row["agent_id"]: row for row in rows}


def _person(first: str, last: str, username: str) -> str:
    return f"{first} {last}".strip() or username


# --- Next in line --------------------------------------------------------------------------------


def next_in_line(scope: Scope, now: datetime, limit: int = 10) -> list[dict[str, Any]]:
    """The first waiting items in routing order (what the router takes next) in the scope.

    Read along the claim path's own partial index, so it stops after ``limit`` rows however deep
    the backlog is. These are the items a supervisor may want to move or push by hand.
    """
    if not scope.queue_ids:
        return []
    rows = (
        WorkItem.objects.filter(status=WorkItemStatus.WAITING, queue_id__in=scope.queue_ids)
        .order_by("routing_priority", "priority", "enqueued_at", "id")
        .values(
            "id",
            "subject",
            "priority",
            "queue_id",
            "queue__name",
            "channel__key",
            "channel__label",
            "enqueued_at",
        )[:limit]
    )
    return [
        {
            "id": r["id"],
            "subject": r["subject"],
            "priority": r["priority"],
            "queue_id": r["queue_id"],
            "queue": r["queue__name"],
            "channel": r["channel__key"],
            "channel_label": r["channel__label"],
            "enqueued_at": _iso(r["enqueued_at"]),
            "wait_seconds": _seconds(now - r["enqueued_at"]),
        }
        for r in rows
    ]


# --- Skills backlog -------------------------------------------------------------------------------


def skills_backlog(scope: Scope, now: datetime) -> list[dict[str, Any]]:
    """Per skill that waiting items of the scope's queues need now: how many wait, the longest
    wait, how many agents (members of the scope's queues) are online with the skill at any
    level, and how many of the waiting items nobody could take for want of it: no member of
    their queue online for their channel has the skill at the level the item asks. Two grouped
    queries whatever the backlog.

    A requirement counts while it is in force: a required skill until the item is taken, an
    additional one until its ``drop_after_seconds`` have passed since the item entered its
    queue (after that the item no longer needs it).
    """
    if not scope.queue_ids:
        return []
    in_force = Q(additional=False) | Q(
        additional=True,
        drop_deadline__gt=Value(now),
    )
    covered = AgentSkill.objects.filter(
        skill_id=OuterRef("skill_id"),
        level__gte=OuterRef("min_level"),
        agent__status__is_online=True,
        agent__status__channels=OuterRef("item__channel_id"),
        agent__memberships__queue_id=OuterRef("item__queue_id"),
    )
    needs = (
        ItemSkill.objects.filter(
            item__status=WorkItemStatus.WAITING, item__queue_id__in=scope.queue_ids
        )
        .annotate(
            drop_deadline=ExpressionWrapper(
                F("item__enqueued_at")
                + ExpressionWrapper(
                    # (a plain integer: SQLite multiplies a duration only by one)
                    ExpressionWrapper(F("drop_after_seconds"), output_field=IntegerField())
                    * Value(timedelta(seconds=1)),
                    output_field=DurationField(),
                ),
                output_field=DateTimeField(),
            )
        )
        .filter(in_force)
        .values("skill_id", "skill__name")
        .annotate(
            waiting=Count("item_id", distinct=True),
            oldest=Min("item__enqueued_at"),
            uncovered=Count("item_id", distinct=True, filter=~Q(Exists(covered))),
        )
        .order_by("-waiting", "skill__name")
    )
    rows = list(needs)
    if not rows:
        return []
    online = dict(
        AgentSkill.objects.filter(
            skill_id__in=[r["skill_id"] for r in rows],
            agent__status__is_online=True,
            agent__memberships__queue_id__in=scope.queue_ids,
        )
        .values("skill_id")
        .annotate(agents=Count("agent_id", distinct=True))
        .values_list("skill_id", "agents")
        .order_by()
    )
    return [
        {
            "skill_id": r["skill_id"],
            "name": r["skill__name"],
            "waiting": r["waiting"],
            "longest_wait_seconds": _seconds(now - r["oldest"]) or 0,
            "agents_online": online.get(r["skill_id"], 0),
            "nobody_online_can_take": r["uncovered"],
        }
        for r in rows
    ]


def skill_choices() -> list[dict[str, Any]]:
    """Every skill, for the dashboard's skill editor."""
    return [{"id": pk, "name": name} for pk, name in Skill.objects.values_list("id", "name")]


# --- Push to agent ------------------------------------------------------------------------------


def push_choices(user: Any, item_id: int, now: datetime | None = None) -> dict[str, Any]:
    """The members of a waiting item's queue a supervisor may push it to, and why not the others
    (the engine's rule: ``routing.engine.eligibility``). A refusal still cooling down or a
    preferred agent does not stop a push; the note says so. ``NotFound`` outside the user's
    queues, ``Conflict`` if the item no longer waits."""
    now = now or timezone.now()
    item = (
        WorkItem.objects.select_related("queue__routing_config", "channel")
        .filter(pk=item_id, queue__in=supervised_queues(user))
        .first()
    )
    if item is None:
        raise NotFound(
            _("No work item %(id)s in a queue you supervise.") % {"id": item_id}, "not_found"
        )
    if item.status != WorkItemStatus.WAITING:
        raise Conflict(_("Only waiting items can be pushed to an agent."), item.status)
    channel = str(item.channel)
    agents: list[dict[str, Any]] = []
    for agent, why in explain_item(item, now=now):
        agents.append(
            {
                "id": agent.pk,
                "name": str(agent),
                "used_capacity": engine.as_number(agent.used_capacity),
                "capacity": engine.as_number(agent.capacity),
                "can_push": why is None or not why.hard,
                "routable": why is None,
                "reason": why.reason.value if why else None,
                "text": reason_text(why, channel=channel) if why else "",
            }
        )
    agents.sort(key=lambda a: (not a["can_push"], a["name"].lower(), a["id"]))
    return {"item_id": item.pk, "subject": item.subject, "agents": agents}


# --- The snapshot --------------------------------------------------------------------------------


def snapshot(user: Any, now: datetime | None = None) -> dict[str, Any]:
    """The center right now, as far as ``user`` may see it; JSON-ready (ISO times, seconds).

    Keys: ``at``, ``day_start``, ``timezone``, ``queues`` (see ``queue_metrics``), ``totals``,
    ``agents`` (see ``agent_metrics``), ``work`` (live offers and assignments, longest in state
    first, at most ``SUPERVISOR_WORK_LIST_LIMIT``), ``work_total``, ``next_in_line``,
    ``skills_backlog`` (see ``skills_backlog``).
    A supervisor sees the queues they supervise and the members of those queues; admins see all.
    """
    now = now or timezone.now()
    scope = scope_for(user)
    return build_snapshot(scope, now)


def build_snapshot(scope: Scope, now: datetime) -> dict[str, Any]:
    queues = queue_metrics(scope, now)
    work = live_work(scope, now)
    agents = agent_metrics(scope, now, work)
    limit = settings.SUPERVISOR_WORK_LIST_LIMIT
    return {
        "at": now.isoformat(),
        "day_start": day_start(now).isoformat(),
        "timezone": settings.TIME_ZONE,
        "queues": queues,
        "totals": _totals(queues, agents),
        "agents": agents,
        "work": work[:limit],
        "work_total": len(work),
        "next_in_line": next_in_line(scope, now),
        "skills_backlog": skills_backlog(scope, now),
    }


def _totals(queues: list[dict[str, Any]], agents: list[dict[str, Any]]) -> dict[str, Any]:
    answered = sum(q["answered_today"] for q in queues)
    within = sum(q["answered_within_target_today"] for q in queues)
    late = sum(q["abandoned_after_target_today"] for q in queues)
    return {
        "waiting": sum(q["waiting"] for q in queues),
        "offered": sum(q["offered"] for q in queues),
        "assigned": sum(q["assigned"] for q in queues),
        "longest_wait_seconds": max((q["longest_wait_seconds"] for q in queues), default=0),
        "handled_today": sum(q["handled_today"] for q in queues),
        "abandoned_today": sum(q["abandoned_today"] for q in queues),
        "service_level_percent": _service_level(within, answered, late),
        "agents_online": sum(1 for a in agents if a["online"]),
        "agents_with_room": sum(1 for a in agents if a["has_room"]),
    }


def presence_choices() -> list[Mapping[str, Any]]:
    """Statuses a supervisor can set an agent to (``None`` means offline)."""
    return list(
        PresenceStatus.objects.order_by("-is_online", "name").values("id", "name", "is_online")
    )


# --- History -------------------------------------------------------------------------------------


def parse_since(raw: str | None, now: datetime) -> datetime:
    """The start of a history window from an ISO 8601 string; default and limit from settings."""
    max_hours = settings.SUPERVISOR_HISTORY_MAX_HOURS
    if not raw:
        return now - timedelta(hours=settings.SUPERVISOR_HISTORY_DEFAULT_HOURS)
    try:
        since = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise DomainError(
            _("since must be an ISO 8601 date and time, e.g. 2026-01-31T08:00:00Z."), "since"
        ) from None
    if timezone.is_naive(since):
        since = timezone.make_aware(since, timezone.get_default_timezone())
    if since > now:
        raise DomainError(_("since must not be in the future."), "since")
    if since < now - timedelta(hours=max_hours):
        raise DomainError(
            _("since must be within the last %(hours)s hours.") % {"hours": max_hours}, "since"
        )
    return since


def history(
    user: Any, *, since: datetime, now: datetime | None = None, queue_id: int | None = None
) -> dict[str, Any]:
    """Samples of backlog, longest wait and service level per queue from ``since`` to ``now``.

    ``queue_id`` narrows to one queue, which must be one the user supervises (else ``NotFound``).
    One index range scan on (queue, at).
    """
    now = now or timezone.now()
    scope = scope_for(user)
    queues = scope.queues
    if queue_id is not None:
        queues = tuple(q for q in queues if q.id == queue_id)
        if not queues:
            raise NotFound(_("No queue %(id)s that you supervise.") % {"id": queue_id}, "not_found")
    series: dict[int, list[dict[str, Any]]] = {q.id: [] for q in queues}
    rows = (
        QueueSample.objects.filter(queue_id__in=list(series), at__gte=since, at__lte=now)
        .order_by("queue_id", "at")
        .values(
            "queue_id",
            "at",
            "waiting",
            "longest_wait_seconds",
            "answered_today",
            "answered_within_target_today",
            "abandoned_after_target_today",
        )
    )
    for r in rows:
        series[r["queue_id"]].append(
            {
                "at": r["at"].isoformat(),
                "waiting": r["waiting"],
                "longest_wait_seconds": r["longest_wait_seconds"],
                "service_level_percent": _service_level(
                    r["answered_within_target_today"],
                    r["answered_today"],
                    r["abandoned_after_target_today"],
                ),
            }
        )
    return {
        "since": since.isoformat(),
        "until": now.isoformat(),
        "interval_seconds": settings.SUPERVISOR_SAMPLE_INTERVAL_SECONDS,
        "queues": [
            {
                "id": q.id,
                "name": q.name,
                "service_level_goal_percent": q.goal_percent,
                "samples": series[q.id],
            }
            for q in queues
        ],
    }
