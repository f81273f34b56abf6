"""The sweep: the periodic safety net that expires offers, sets lost consoles offline, repairs
capacity drift and runs a pass.

Expiry works on sets: however many offers are due, one sweep runs the same few statements (on
PostgreSQL: find the agents, lock them, one statement that ends the offers and returns their
items, one that frees the agents' capacity and applies their status after timeout). The capacity
check looks only at agents whose work changed since the last check, and at every agent once a
minute.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import (
    Case,
    Exists,
    F,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from omnirouter import metrics, realtime
from presence.models import Agent, PresenceStatus
from routing import engine
from routing.dispatch import request_routing
from routing.models import (
    LIVE_STATES,
    AgentWork,
    AgentWorkState,
    QueueMembership,
    WorkItem,
    WorkItemStatus,
)
from routing.selectors import PRESENCE_FIELDS, presence_payload
from routing.services.locks import (
    lock_agents,
)
from routing.services.routing_pass import route_waiting_work
from routing.services.transitions import (
    STRANDED_NOTE,
    apply_status,
    capacity_in_force,
    exact_units,
)

logger = logging.getLogger(__name__)

# Load in capacity units, exact to a hundredth (``engine.Units``; numeric(7, 2) in the database).
_UNITS = models.DecimalField(max_digits=7, decimal_places=2)

# The most offers one sweep expires (one transaction); any more wait for the next sweep.
EXPIRE_LIMIT = 2000


def sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Periodic safety net: expire offers, drop lost consoles, fix capacity drift, route."""
    now = now or timezone.now()
    expired = expire_offers(now=now)
    offline = expire_lost_consoles(now=now)
    drift = reconcile_capacity(since=_capacity_checks.since(now), now=now)
    # The pass runs at the sweep's clock: offers it makes are stamped and timed from the same
    # moment the sweep expired the old ones at, and cooldowns are measured against it.
    routed = route_waiting_work(now=now).offers
    return {"expired": expired, "offline": offline, "drift": drift, "offers": routed}


# --- expiry ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EndedOffer:
    """An offer the sweep ended: timed out, or canceled because the agent's status after
    timeout no longer covers its channel. Carries what its ``work.changed`` event shows."""

    id: int
    item_id: int
    agent_id: int
    queue_id: int
    units: engine.Units
    state: str
    pushed_at: datetime
    expires_at: datetime | None
    enqueued_at: datetime
    routing_reason: dict[str, Any]
    subject: str
    payload: Any
    priority: int
    queue_name: str
    channel_key: str
    channel_label: str

    def work_payload(self, now: datetime) -> dict[str, Any]:
        # The shape of ``selectors.work_payload``, from the row the sweep already has.
        return {
            "id": self.id,
            "item_id": self.item_id,
            "state": self.state,
            "subject": self.subject,
            "queue": self.queue_name,
            "queue_id": self.queue_id,
            "channel": self.channel_key,
            "channel_label": self.channel_label,
            "units": engine.as_number(self.units),
            "pushed_at": self.pushed_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "opened_at": None,
            "ended_at": now.isoformat(),
            "enqueued_at": self.enqueued_at.isoformat(),
            "why": (self.routing_reason or {}).get("text", ""),
            "payload": self.payload,
            "priority": self.priority,
        }


@dataclass
class Expiry:
    """What one expiry wrote, for the events after commit."""

    ended: list[EndedOffer] = field(default_factory=list)
    # agent id -> the values of selectors.PRESENCE_FIELDS after the change
    presence: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    # queues of the agents whose status changed (their dashboards show the new status)
    member_queues: set[int] = field(default_factory=set)


def expire_offers(*, now: datetime | None = None, limit: int = EXPIRE_LIMIT) -> int:
    """Time out pushed offers past their deadline, all in one transaction whatever their number.

    Their items go back in line with their original age; the agents' capacity is freed; an
    agent whose presence configuration has a status after timeout gets it, and their other
    offers that status does not cover go back to their queues too (canceled). The refusal is
    the ``timed_out`` agent work (the pass's cooldown reads it). The records behind the items
    are not told: an offer that times out leaves its record waiting, as before the offer (see
    ``records``). After commit: ``work.changed`` for each ended offer, ``presence.changed`` for
    each agent, ``queue.changed`` for each queue touched, and one routing request.

    Locks, in the one order: the agents of the due offers (by id), then the offers (``SKIP
    LOCKED``: an offer being accepted at this instant is left to the accept, and expires in the
    next sweep if the accept fails), then their items. An accept racing the deadline is a
    compare-and-set on the same row, so an offer is accepted or expired, never both.
    """
    now = now or timezone.now()
    # Unlocked and cheap (the partial index on pushed offers' deadlines): most sweeps stop here.
    agent_ids = set(
        AgentWork.objects.filter(state=AgentWorkState.PUSHED, expires_at__lte=now)
        .order_by("expires_at")
        .values_list("agent_id", flat=True)[:limit]
    )
    if not agent_ids:
        return 0
    with transaction.atomic():
        locked = lock_agents(agent_ids)
        if connection.vendor == "postgresql":
            expiry = _expire_in_postgresql(locked, now, limit)
        else:
            expiry = _expire_with_orm(locked, now, limit)
        expired = 0
        for offer in expiry.ended:
            if offer.state == AgentWorkState.TIMED_OUT and offer.expires_at is not None:
                metrics.record_expiry(offer.expires_at, now)
                expired += 1
        if expiry.ended:
            _publish(expiry, now)
            request_routing()
    return expired


def _expire_in_postgresql(agent_ids: list[int], now: datetime, limit: int) -> Expiry:
    """Two statements: the offers and their items, then the agents."""
    with connection.cursor() as cur:
        cur.execute(
            # The due offers of the locked agents, locked themselves; the agents among them
            # with a status after timeout; those agents' other offers that status does not
            # cover (waited for, not skipped: only an accept can hold one, and an accepted
            # offer stays). All of them end in one UPDATE; their items are returned in another.
            "WITH due AS (SELECT w.id FROM routing_agentwork w"
            " WHERE w.agent_id = ANY(%(agents)s) AND w.state = %(pushed)s"
            " AND w.expires_at <= %(now)s ORDER BY w.expires_at, w.id LIMIT %(limit)s"
            " FOR UPDATE OF w SKIP LOCKED),"
            " after AS (SELECT a.id AS agent_id, c.status_after_timeout_id AS status_id"
            " FROM presence_agent a"
            " JOIN presence_presenceconfiguration c ON c.id = a.presence_config_id"
            " WHERE c.status_after_timeout_id IS NOT NULL AND a.id IN"
            " (SELECT w.agent_id FROM routing_agentwork w JOIN due ON due.id = w.id)),"
            " stranded AS (SELECT w.id FROM routing_agentwork w"
            " JOIN after ON after.agent_id = w.agent_id"
            " WHERE w.state = %(pushed)s AND w.id NOT IN (SELECT id FROM due)"
            " AND NOT EXISTS (SELECT 1 FROM presence_presencestatus s"
            " JOIN presence_presencestatus_channels sc ON sc.presencestatus_id = s.id"
            " WHERE s.id = after.status_id AND s.is_online"
            " AND sc.servicechannel_id = w.channel_id)"
            " FOR UPDATE OF w),"
            " ended AS (UPDATE routing_agentwork w"
            " SET state = CASE WHEN w.id IN (SELECT id FROM due) THEN %(timed_out)s"
            " ELSE %(canceled)s END, ended_at = %(now)s, decline_reason = '',"
            " end_note = CASE WHEN w.id IN (SELECT id FROM due) THEN '' ELSE %(note)s END"
            " WHERE w.id IN (SELECT id FROM due UNION ALL SELECT id FROM stranded)"
            " RETURNING w.id, w.item_id, w.agent_id, w.queue_id, w.channel_id, w.units,"
            " w.state, w.pushed_at, w.expires_at, w.enqueued_at, w.routing_reason),"
            " returned AS (UPDATE routing_workitem i SET status = %(waiting)s FROM ended e"
            " WHERE i.id = e.item_id AND i.status IN (%(offered)s, %(assigned)s)"
            " RETURNING i.id)"
            " SELECT e.id, e.item_id, e.agent_id, e.queue_id, e.units, e.state, e.pushed_at,"
            " e.expires_at, e.enqueued_at, e.routing_reason, i.subject, i.payload, i.priority,"
            " q.name, c.key, c.label, after.status_id"
            " FROM ended e JOIN routing_workitem i ON i.id = e.item_id"
            " JOIN routing_queue q ON q.id = e.queue_id"
            " JOIN routing_servicechannel c ON c.id = e.channel_id"
            " LEFT JOIN after ON after.agent_id = e.agent_id ORDER BY e.id",
            {
                "agents": agent_ids,
                "now": now,
                "limit": limit,
                "note": STRANDED_NOTE,
                "pushed": AgentWorkState.PUSHED.value,
                "timed_out": AgentWorkState.TIMED_OUT.value,
                "canceled": AgentWorkState.CANCELED.value,
                "waiting": WorkItemStatus.WAITING.value,
                "offered": WorkItemStatus.OFFERED.value,
                "assigned": WorkItemStatus.ASSIGNED.value,
            },
        )
        rows = cur.fetchall()
        if not rows:
            return Expiry()
        expiry = Expiry()
        units: dict[int, engine.Units] = defaultdict(int)
        counts: dict[int, int] = defaultdict(int)
        status_after: dict[int, int | None] = {}
        for row in rows:
            *work, status_id = row
            # Django reads jsonb as text and decodes it in the field; so do we.
            work[9] = _json(work[9])
            work[11] = _json(work[11])
            offer = EndedOffer(*work)
            expiry.ended.append(offer)
            units[offer.agent_id] += offer.units
            counts[offer.agent_id] += 1
            status_after[offer.agent_id] = status_id
        ids = sorted(units)
        # One UPDATE ... FROM unnest() for every agent: their load drops by what ended, their
        # status becomes the status after timeout where they have one. It returns what the
        # presence events show, and the queues of those whose status changed.
        cur.execute(
            "UPDATE presence_agent a SET used_capacity = a.used_capacity - v.units,"
            " open_count = a.open_count - v.n,"
            " capacity = GREATEST(a.configured_capacity, a.used_capacity - v.units),"
            " status_id = COALESCE(v.status_id, a.status_id),"
            " status_changed_at = CASE WHEN v.status_id IS NULL THEN a.status_changed_at"
            " ELSE %s END"
            " FROM unnest(%s::bigint[], %s::numeric[], %s::int[], %s::bigint[])"
            " AS v(id, units, n, status_id) WHERE a.id = v.id"
            " RETURNING a.id, a.status_id,"
            " (SELECT s.name FROM presence_presencestatus s WHERE s.id = a.status_id),"
            " (SELECT s.is_online FROM presence_presencestatus s WHERE s.id = a.status_id),"
            " a.status_changed_at,"
            " a.capacity, a.used_capacity, a.open_count,"
            " CASE WHEN v.status_id IS NOT NULL THEN ARRAY(SELECT m.queue_id"
            " FROM routing_queuemembership m WHERE m.agent_id = a.id) END",
            [
                now,
                ids,
                [units[a] for a in ids],
                [counts[a] for a in ids],
                [status_after[a] for a in ids],
            ],
        )
        for *presence, queues in cur.fetchall():
            expiry.presence[presence[0]] = tuple(presence)
            expiry.member_queues.update(queues or ())
    return expiry


def _expire_with_orm(agent_ids: list[int], now: datetime, limit: int) -> Expiry:
    """SQLite (the embedded run): the same writes through the ORM, still a fixed number of
    statements. Its one writer needs no row locks."""
    covered = PresenceStatus.channels.through.objects.filter(
        presencestatus_id=OuterRef("agent__presence_config__status_after_timeout_id"),
        presencestatus__is_online=True,
        servicechannel_id=OuterRef("channel_id"),
    )
    # The due offers, and every pushed offer a status after timeout would not cover (kept only
    # for agents with an offer that does time out now).
    rows = list(
        AgentWork.objects.filter(agent_id__in=agent_ids, state=AgentWorkState.PUSHED)
        .annotate(covered=Exists(covered))
        .filter(
            Q(expires_at__lte=now)
            | Q(agent__presence_config__status_after_timeout__isnull=False, covered=False)
        )
        .order_by("expires_at", "id")
        .values_list(
            "id",
            "item_id",
            "agent_id",
            "queue_id",
            "units",
            "state",
            "pushed_at",
            "expires_at",
            "enqueued_at",
            "routing_reason",
            "item__subject",
            "item__payload",
            "item__priority",
            "queue__name",
            "channel__key",
            "channel__label",
            "agent__presence_config__status_after_timeout_id",
            "covered",
        )
    )
    due = [r for r in rows if r[7] is not None and r[7] <= now][:limit]
    due_ids = {r[0] for r in due}
    timed_out_agents = {r[2] for r in due}
    stranded = [
        r
        for r in rows
        if r[0] not in due_ids and r[2] in timed_out_agents and r[16] is not None and not r[17]
    ]
    if not due:
        return Expiry()
    expiry = Expiry()
    for *work, _status, _covered in sorted(due + stranded):
        work[5] = AgentWorkState.TIMED_OUT if work[0] in due_ids else AgentWorkState.CANCELED
        expiry.ended.append(EndedOffer(*work))
    ended_ids = [o.id for o in expiry.ended]
    AgentWork.objects.filter(id__in=ended_ids).update(
        state=Case(
            When(id__in=due_ids, then=Value(AgentWorkState.TIMED_OUT)),
            default=Value(AgentWorkState.CANCELED),
        ),
        ended_at=now,
        decline_reason="",
        end_note=Case(When(id__in=due_ids, then=Value("")), default=Value(STRANDED_NOTE)),
    )
    WorkItem.objects.filter(
        id__in=[o.item_id for o in expiry.ended],
        status__in=[WorkItemStatus.OFFERED, WorkItemStatus.ASSIGNED],
    ).update(status=WorkItemStatus.WAITING)
    units: dict[int, engine.Units] = defaultdict(int)
    counts: dict[int, int] = defaultdict(int)
    for offer in expiry.ended:
        units[offer.agent_id] += offer.units
        counts[offer.agent_id] += 1
    status_after = {r[2]: r[16] for r in due if r[16] is not None}
    freed = Case(
        *(When(id=a, then=Value(u)) for a, u in units.items()),
        default=Value(0),
        output_field=_UNITS,
    )
    Agent.objects.filter(id__in=list(units)).update(
        used_capacity=exact_units(F("used_capacity") - freed),
        open_count=F("open_count")
        - Case(*(When(id=a, then=Value(c)) for a, c in counts.items()), default=Value(0)),
        capacity=capacity_in_force(
            F("configured_capacity"), exact_units(F("used_capacity") - freed)
        ),
        status_id=Case(
            *(When(id=a, then=Value(s)) for a, s in status_after.items()),
            default=F("status_id"),
            output_field=models.BigIntegerField(),
        ),
        status_changed_at=Case(
            When(id__in=list(status_after), then=Value(now)), default=F("status_changed_at")
        ),
    )
    for row in Agent.objects.filter(id__in=list(units)).values_list(*PRESENCE_FIELDS):
        expiry.presence[row[0]] = row
    if status_after:
        expiry.member_queues.update(
            QueueMembership.objects.filter(agent_id__in=list(status_after)).values_list(
                "queue_id", flat=True
            )
        )
    return expiry


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _publish(expiry: Expiry, now: datetime) -> None:
    """The events of one expiry, sent together after commit: each ended offer to its agent,
    each agent's new load and status, and one refresh per queue touched."""
    messages = [
        (realtime.agent_group(o.agent_id), realtime.WORK_CHANGED, o.work_payload(now))
        for o in expiry.ended
    ]
    messages += [
        (
            realtime.agent_group(agent_id),
            realtime.PRESENCE_CHANGED,
            presence_payload(dict(zip(PRESENCE_FIELDS, row, strict=True))),
        )
        for agent_id, row in sorted(expiry.presence.items())
    ]
    queues = {o.queue_id for o in expiry.ended} | expiry.member_queues
    messages += [
        (realtime.queue_group(q), realtime.QUEUE_CHANGED, {"queue_id": q}) for q in sorted(queues)
    ]
    realtime.publish_many(messages)


# --- lost consoles ---------------------------------------------------------------------------


def expire_lost_consoles(*, now: datetime | None = None) -> int:
    """Set offline the agents whose console has been silent longer than the grace period.

    A live console's stored time may be up to ``CONSOLE_SEEN_WRITE_INTERVAL_SECONDS`` older than
    its last heartbeat (``touch_console`` skips writes within that interval), so the cutoff
    allows for it: a console silent for the whole grace period, and no less, goes offline.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(
        seconds=settings.CONSOLE_GRACE_SECONDS + settings.CONSOLE_SEEN_WRITE_INTERVAL_SECONDS
    )
    lost = list(
        Agent.objects.filter(status__is_online=True, presence_config__console_required=True)
        .filter(Q(console_seen_at__lt=cutoff) | Q(console_seen_at__isnull=True))
        .values_list("id", flat=True)
    )
    for agent_id in lost:
        with transaction.atomic():
            lock_agents([agent_id])
            # Re-checked under the lock: a heartbeat may have come in meanwhile.
            still_lost = Agent.objects.filter(
                Q(console_seen_at__lt=cutoff) | Q(console_seen_at__isnull=True),
                id=agent_id,
                status__is_online=True,
            ).exists()
            if still_lost:
                apply_status(agent_id, None, now=now)
    return len(lost)


# --- capacity drift --------------------------------------------------------------------------

# How far before the last check a change may be stamped and still be looked at: a service stamps
# its work with the time it started, and may commit a moment after a check began.
CHECK_OVERLAP = timedelta(seconds=10)


@dataclass
class CapacityChecks:
    """When this process last checked agents' load, and last checked every agent's.

    Per process: each sweeping process keeps its own, so with several the checks only overlap
    more. A clock that goes back (tests with a fake time) starts over with a full check.
    """

    checked_at: datetime | None = None
    full_at: datetime | None = None

    def since(self, now: datetime) -> datetime | None:
        """Check the agents whose work changed at or after this; ``None``: every agent."""
        every = timedelta(seconds=settings.ROUTING_CAPACITY_FULL_CHECK_SECONDS)
        if (
            self.checked_at is None
            or self.full_at is None
            or now < self.checked_at
            or now - self.full_at >= every
        ):
            return None
        return self.checked_at - CHECK_OVERLAP

    def done(self, now: datetime, *, full: bool) -> None:
        self.checked_at = now
        if full:
            self.full_at = now


_capacity_checks = CapacityChecks()


def reconcile_capacity(*, since: datetime | None = None, now: datetime | None = None) -> int:
    """Check agents' used capacity and open count against their live work; fix drift.

    ``since``: only agents with work offered or ended at or after it (their load changed);
    ``None``: every agent. Either way one query finds the agents whose stored load is not their
    live work; each is then fixed under its lock (rare: nothing but a bug or a hand edit drifts).
    Used capacity is never trusted blindly: routing must not stall on a phantom load.
    """
    now = now or timezone.now()
    agents = Agent.objects.all()
    if since is not None:
        agents = agents.filter(
            id__in=AgentWork.objects.filter(
                Q(pushed_at__gte=since) | Q(ended_at__gte=since)
            ).values("agent_id")
        )
    live = (
        AgentWork.objects.filter(agent_id=OuterRef("pk"), state__in=LIVE_STATES)
        .order_by()
        .values("agent_id")
    )
    suspects = list(
        agents.annotate(
            live_units=Coalesce(
                Subquery(live.annotate(u=exact_units(Sum("units"))).values("u")),
                Value(0),
                output_field=_UNITS,
            ),
            live_count=Coalesce(Subquery(live.annotate(n=models.Count("id")).values("n")), 0),
        )
        .exclude(used_capacity=F("live_units"), open_count=F("live_count"))
        .order_by("id")
        .values_list("id", flat=True)
    )
    fixed = sum(_fix_drift(agent_id) for agent_id in suspects)
    _capacity_checks.done(now, full=since is None)
    if fixed:
        request_routing()
    return fixed


def _fix_drift(agent_id: int) -> bool:
    with transaction.atomic():
        lock_agents([agent_id])
        agg = AgentWork.objects.filter(agent_id=agent_id, state__in=LIVE_STATES).aggregate(
            units=Sum("units"), n=models.Count("id")
        )
        units, count = agg["units"] or 0, agg["n"]
        agent = Agent.objects.get(pk=agent_id)
        if (agent.used_capacity, agent.open_count) == (units, count):
            return False  # it moved on since the check: nothing drifted
        logger.warning(
            "capacity drift on agent %s: stored %s units/%s items, live %s/%s; fixed",
            agent_id,
            agent.used_capacity,
            agent.open_count,
            units,
            count,
        )
        Agent.objects.filter(pk=agent_id).update(
            used_capacity=units,
            open_count=count,
            capacity=capacity_in_force(F("configured_capacity"), Value(units)),
        )
        return True
