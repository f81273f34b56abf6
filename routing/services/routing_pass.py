"""The routing pass: batches of waiting items matched to agents with room by the engine, one
transaction per batch (see docs/architecture.md, "The routing pass").
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import (
    Count,
    Exists,
    F,
    Max,
    OuterRef,
    Q,
    Subquery,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from omnirouter import metrics
from presence.models import Agent, PresenceStatus
from routing import engine
from routing.models import (
    AgentSkill,
    AgentWork,
    AgentWorkState,
    ItemSkill,
    Queue,
    QueueMembership,
    WorkItem,
    WorkItemStatus,
)
from routing.selectors import (
    PRESENCE_FIELDS,
    agent_skills,
    hundredths,
    offer_limit,
    online_preferred,
    pending_offers,
    refusals,
    requirement,
)
from routing.services import offers as offer_writes
from routing.services.locks import (
    take_pass_lock,
)
from routing.services.offers import LockedAgents, QueueConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PassResult:
    offers: int
    batches: int
    items_considered: int


def route_waiting_work(
    *,
    now: datetime | None = None,
    batch_size: int | None = None,
    max_batches: int | None = None,
) -> PassResult:
    """Match waiting items to agents with room, in batches, one transaction per batch.

    Each batch: take the pass lock, lock the agents with room (by id), claim the next page of
    waiting items in routing order with ``FOR UPDATE SKIP LOCKED``, let the engine decide, write
    the offers. Pages continue after the last item seen, so items nobody can take right now do not
    starve the items behind them. Side effects: offers pushed to consoles and queue changes to
    supervisors after each batch commits.
    """
    batch_size = batch_size or settings.ROUTING_BATCH_SIZE
    max_batches = max_batches or settings.ROUTING_MAX_PAGES_PER_PASS
    started = time.perf_counter()
    cursor: tuple[int, int, int, datetime, int] | None = None
    offers = batches = considered = 0
    while batches < max_batches:
        with transaction.atomic():
            result = _route_batch(now=now, batch_size=batch_size, after=cursor)
        batches += 1
        offers += result.offers
        considered += result.claimed
        if result.last_key is None or result.claimed < batch_size or not result.agents_left:
            break
        cursor = result.last_key
    metrics.record_pass(time.perf_counter() - started, offers)
    return PassResult(offers=offers, batches=batches, items_considered=considered)


@dataclass(frozen=True)
class _BatchResult:
    offers: int
    claimed: int
    last_key: tuple[int, int, int, datetime, int] | None
    agents_left: bool


def _route_batch(
    *, now: datetime | None, batch_size: int, after: tuple[int, int, int, datetime, int] | None
) -> _BatchResult:
    take_pass_lock()
    # The clock is read once the lock is held: offers of batches that waited on each other are
    # stamped (pushed, due) in the order they were made, not the order their passes started.
    now = now or timezone.now()
    most_spare: dict[int, int] = {}
    peeked = []
    if after is None:
        # A line shorter than a page (the usual case between bursts) is taken whole: no need
        # to work out first which items anyone could take.
        waiting = _WaitingFilter(None, None, None)
        peeked = waiting.peek(batch_size)
    if after is not None or len(peeked) == batch_size:
        # Who could take what, unlocked: it only decides which page to look at, so that items
        # nobody can take now do not fill the pages. The decision is made on locked rows below.
        most_spare, channel_ids = _room_by_queue(now)
        if not most_spare or not channel_ids:
            return _BatchResult(0, 0, None, False)
        waiting = _WaitingFilter(most_spare, channel_ids, after)
        peeked = waiting.peek(batch_size)
    if not peeked:
        return _BatchResult(0, 0, None, True)
    page_queues = {queue_id for queue_id, _ in peeked}
    # Only the members of the page's queues are locked: every agent who could take an item of
    # the page, and no one else (a pass over a few new items no longer locks every agent).
    locked = _lock_agents_with_room(now, page_queues)
    agents = locked.agents
    page = waiting.claim(page_queues, up_to=peeked[-1][1]) if agents else []
    if not page:
        return _BatchResult(0, len(peeked), peeked[-1][1], True)
    configs = _queue_configs({row.queue_id for row in page})
    refused = refusals([row.id for row in page if row.refused])
    preferred_online = online_preferred(row.preferred_agent_id for row in page)
    # Skills: two statements, only for a page with requirements (the claim says which items).
    needs = _requirements([row for row in page if row.has_skills])
    if needs:
        agents = _with_skills(agents)

    no_refusals: dict[int, datetime] = {}
    items = [
        engine.ItemView(
            id=row.id,
            queue_id=row.queue_id,
            channel_id=row.channel_id,
            routing_priority=row.routing_priority,
            priority=row.priority,
            secondary_priority=row.secondary_priority,
            enqueued_at=row.enqueued_at,
            routing_model=configs[row.queue_id].routing_model,
            size_units=row.size_units,
            size_percent=row.size_percent,
            refused_by=refused.get(row.id, no_refusals),
            preferred_agent_id=(
                row.preferred_agent_id
                if (row.preferred_agent_id, row.channel_id) in preferred_online
                else None
            ),
            preferred_until=row.preferred_until,
            requirements=needs.get(row.id, ()),
        )
        for row in page
    ]
    offers = engine.match(
        items,
        agents.values(),
        now=now,
        reoffer_cooldown=timedelta(seconds=settings.ROUTING_REOFFER_COOLDOWN_SECONDS),
    )
    rows_by_id = {row.id: row for row in page}
    offer_writes.write_offers(offers, rows_by_id, configs, locked, now, needs=needs)

    taken: dict[int, engine.Units] = defaultdict(int)
    made: dict[int, int] = defaultdict(int)
    for offer in offers:
        taken[offer.agent_id] += offer.units
        made[offer.agent_id] += 1
    # Room left with the agents of this batch (and offers they may still hold), or with members
    # of queues it did not touch.
    still_room = any(
        a.capacity - a.used - taken[a.id] > 0
        and (a.max_offers is None or a.pending_offers + made[a.id] < a.max_offers)
        for a in agents.values()
    ) or bool(set(most_spare) - page_queues)
    return _BatchResult(
        offers=len(offers),
        claimed=len(peeked),
        last_key=peeked[-1][1],
        agents_left=still_room,
    )


def routable_agents_q(now: datetime, prefix: str = "") -> Q:
    """Agents who may be offered work (``prefix`` reaches them from a related model): online,
    with a live console or none needed. The rule is ``engine.eligibility``'s; this and the SQL
    below only narrow what a pass reads, held equal to it by tests/routing/test_prefilter.py."""
    grace = timedelta(seconds=settings.CONSOLE_GRACE_SECONDS)
    return Q(**{f"{prefix}status__is_online": True}) & (
        Q(**{f"{prefix}presence_config__console_required": False})
        | Q(**{f"{prefix}console_seen_at__gte": now - grace})
    )


def _open_to_offers_q(prefix: str = "") -> Q:
    """Room left, and not paced (``engine``: an agent with an offer limit who holds that many
    unanswered offers is offered nothing more; auto-accept agents hold none)."""
    pending = Coalesce(
        Subquery(
            AgentWork.objects.filter(agent_id=OuterRef(f"{prefix}pk"), state=AgentWorkState.PUSHED)
            .order_by()
            .values("agent_id")
            .annotate(n=Count("id"))
            .values("n")
        ),
        0,
    )
    return Q(**{f"{prefix}used_capacity__lt": F(f"{prefix}capacity")}) & (
        Q(**{f"{prefix}presence_config__max_offers__isnull": True})
        | Q(**{f"{prefix}presence_config__auto_accept": True})
        | Q(**{f"{prefix}presence_config__max_offers__gt": pending})
    )


# The routable agents with room of ``routable_agents_q`` and ``_open_to_offers_q``, spelt in
# SQL for the two statements below that run on every batch (Django took longer to compile
# their ORM forms than PostgreSQL to run them). PostgreSQL runs the SQL, SQLite (embedded)
# the ORM form: ``./dev test`` runs the routing scenarios on each (SQLITE_TESTS in ./dev).
_AGENTS_WITH_ROOM_SQL = (
    " FROM presence_agent a"
    " JOIN presence_presencestatus s ON s.id = a.status_id"
    " JOIN presence_presenceconfiguration c ON c.id = a.presence_config_id"
    " WHERE a.used_capacity < a.capacity AND s.is_online"
    " AND (NOT c.console_required OR a.console_seen_at >= %(seen_after)s)"
    " AND (c.max_offers IS NULL OR c.auto_accept OR c.max_offers > (SELECT count(*)"
    " FROM routing_agentwork w WHERE w.agent_id = a.id AND w.state = 'pushed'))"
)


def _raw_sql() -> bool:
    return connection.vendor == "postgresql"


def _room_by_queue(
    now: datetime, *, raw_sql: bool | None = None
) -> tuple[dict[int, int], set[int]]:
    """For each queue with a routable member with room, the most spare capacity among them;
    and the channels those members are available for (aggregates, no locks). ``raw_sql``:
    the PostgreSQL statement (the default there) or the ORM's (elsewhere)."""
    if _raw_sql() if raw_sql is None else raw_sql:
        seen_after = now - timedelta(seconds=settings.CONSOLE_GRACE_SECONDS)
        with connection.cursor() as cur:
            cur.execute(
                "WITH room AS (SELECT a.id, a.status_id, a.capacity - a.used_capacity AS spare"  # noqa: S608 - constant SQL, values are parameters
                + _AGENTS_WITH_ROOM_SQL
                + ") SELECT m.queue_id, max(room.spare) FROM room"
                " JOIN routing_queuemembership m ON m.agent_id = room.id GROUP BY m.queue_id"
                " UNION ALL SELECT sc.servicechannel_id, 0"
                " FROM presence_presencestatus_channels sc"
                " WHERE sc.presencestatus_id IN (SELECT status_id FROM room)"
                " GROUP BY sc.servicechannel_id",
                {"seen_after": seen_after},
            )
            rows = cur.fetchall()
        # Spare capacity is at least 1 for queues; 0 marks the channel rows.
        return (
            {queue_id: spare for queue_id, spare in rows if spare},
            {channel_id for channel_id, spare in rows if not spare},
        )
    with_room = routable_agents_q(now) & _open_to_offers_q()
    most_spare = dict(
        QueueMembership.objects.filter(agent__in=Agent.objects.filter(with_room).values("id"))
        .values_list("queue_id")
        .annotate(spare=Max(F("agent__capacity") - F("agent__used_capacity")))
        .order_by()
    )
    statuses = Agent.objects.filter(with_room).values("status_id")
    channel_ids = set(
        PresenceStatus.channels.through.objects.filter(presencestatus_id__in=statuses).values_list(
            "servicechannel_id", flat=True
        )
    )
    return most_spare, channel_ids


def _lock_agents_with_room(
    now: datetime, queue_ids: set[int], *, raw_sql: bool | None = None
) -> LockedAgents:
    """The routable agents with room in these queues, locked (in id order), with what the batch
    needs to know about them (``raw_sql`` as for ``_room_by_queue``)."""
    # Locked so that accept/decline/close/presence changes wait for this batch, and the capacity
    # we read is the capacity we write against. NO KEY UPDATE, as ``locks.lock_agents``: rows
    # that merely refer to an agent do not wait for the batch.
    if _raw_sql() if raw_sql is None else raw_sql:
        return _lock_agents_with_room_pg(now, queue_ids)
    members = QueueMembership.objects.filter(queue_id__in=queue_ids).values("agent_id")
    rows = list(
        Agent.objects.select_for_update(of=("self",), no_key=True)
        .filter(routable_agents_q(now), _open_to_offers_q(), id__in=members)
        .order_by("id")
        .values_list(
            *PRESENCE_FIELDS,
            "last_assigned_at",
            "presence_config__auto_accept",
            "presence_config__max_offers",
        )
    )
    if not rows:
        return LockedAgents({}, set(), {})
    status_channels = _status_channels({r[1] for r in rows})
    # The memberships of the same agents, selected by the same conditions rather than by a
    # list of a thousand ids (which Django spends longer compiling than PostgreSQL running).
    # Rows of agents that changed in between are not looked up: only locked agents count.
    memberships: dict[int, list[int]] = defaultdict(list)
    for agent_id, queue_id in QueueMembership.objects.filter(
        routable_agents_q(now, prefix="agent__"),
        _open_to_offers_q(prefix="agent__"),
        agent_id__in=members,
    ).values_list("agent_id", "queue_id"):
        memberships[agent_id].append(queue_id)
    none: frozenset[int] = frozenset()
    limits = {r[0]: offer_limit(r[10], r[9]) for r in rows}
    pending = pending_offers(a for a, limit in limits.items() if limit is not None)
    agents = {}
    presence = {}
    auto_accept = set()
    for row in rows:
        agent_id, status_id, _, _, _, capacity, used, open_count, last_assigned_at, auto = row[:10]
        agents[agent_id] = engine.AgentView(
            id=agent_id,
            capacity=engine.whole_or_exact(capacity),
            used=engine.whole_or_exact(used),
            open_count=open_count,
            last_assigned_at=last_assigned_at,
            channel_ids=status_channels.get(status_id, none),
            queue_ids=frozenset(memberships[agent_id]),
            pending_offers=pending.get(agent_id, 0),
            max_offers=limits[agent_id],
        )
        presence[agent_id] = row[: len(PRESENCE_FIELDS)]
        if auto:
            auto_accept.add(agent_id)
    return LockedAgents(agents, auto_accept, presence)


def _lock_agents_with_room_pg(now: datetime, queue_ids: set[int]) -> LockedAgents:
    # One statement: the agents' fields, their queues and their status's channels.
    with connection.cursor() as cur:
        cur.execute(
            "SELECT a.id, a.status_id, s.name, s.is_online, a.status_changed_at, a.capacity,"  # noqa: S608 - constant SQL, values are parameters
            " a.used_capacity, a.open_count, a.last_assigned_at, c.auto_accept,"
            " ARRAY(SELECT m.queue_id FROM routing_queuemembership m WHERE m.agent_id = a.id),"
            " ARRAY(SELECT sc.servicechannel_id FROM presence_presencestatus_channels sc"
            " WHERE sc.presencestatus_id = a.status_id), c.max_offers"
            + _AGENTS_WITH_ROOM_SQL
            + " AND a.id IN (SELECT m.agent_id FROM routing_queuemembership m"
            " WHERE m.queue_id = ANY(%(queues)s))"
            " ORDER BY a.id FOR NO KEY UPDATE OF a",
            {
                "seen_after": now - timedelta(seconds=settings.CONSOLE_GRACE_SECONDS),
                "queues": sorted(queue_ids),
            },
        )
        rows = cur.fetchall()
    # The unanswered offers of agents with a limit are counted once their rows are locked: a
    # count inside the locking statement would be read from before it waited on a lock.
    limits = {r[0]: offer_limit(r[12], r[9]) for r in rows}
    pending = pending_offers(a for a, limit in limits.items() if limit is not None)
    agents = {}
    presence = {}
    auto_accept = set()
    channel_sets: dict[int, frozenset[int]] = {}
    for row in rows:
        agent_id, status_id, _, _, _, capacity, used, open_count, last_assigned_at, auto = row[:10]
        channels = channel_sets.get(status_id)
        if channels is None:
            channels = channel_sets[status_id] = frozenset(row[11])
        agents[agent_id] = engine.AgentView(
            id=agent_id,
            capacity=engine.whole_or_exact(capacity),
            used=engine.whole_or_exact(used),
            open_count=open_count,
            last_assigned_at=last_assigned_at,
            channel_ids=channels,
            queue_ids=frozenset(row[10]),
            pending_offers=pending.get(agent_id, 0),
            max_offers=limits[agent_id],
        )
        presence[agent_id] = row[: len(PRESENCE_FIELDS)]
        if auto:
            auto_accept.add(agent_id)
    return LockedAgents(agents, auto_accept, presence)


def _status_channels(status_ids: Iterable[int]) -> dict[int, frozenset[int]]:
    found: dict[int, set[int]] = defaultdict(set)
    for status_id, channel_id in PresenceStatus.channels.through.objects.filter(
        presencestatus_id__in=list(status_ids)
    ).values_list("presencestatus_id", "servicechannel_id"):
        found[status_id].add(channel_id)
    return {k: frozenset(v) for k, v in found.items()}


_PAGE_FIELDS = (
    "id",
    "queue_id",
    "channel_id",
    "routing_priority",
    "priority",
    "secondary_priority",
    "enqueued_at",
    "size_units",
    "size_percent",
    "subject",
    "preferred_agent_id",
    "preferred_until",
    "record_type_id",
    "record_id",
    "transfer_from",
    "transfer_note",
)


_OrderKey = tuple[int, int, int, datetime, int]
_ORDER = ("routing_priority", "priority", "secondary_priority", "enqueued_at", "id")


class _WaitingFilter:
    """The waiting items a batch may take: in queues whose members have room, on channels they
    are available for, after the pass's last page (or simply all waiting items, without
    ``most_spare`` and ``channel_ids``).

    Items larger than the most spare capacity of their queue's members cannot be offered in
    this batch: leaving them out changes no decision, and fills the page with items that can
    be (as agents fill up, a page of everything would be mostly items nobody has room for).
    Percentage sizes depend on each agent's capacity, so those items always come. Skills do
    not narrow the page: whether an item's requirements are in force depends on the clock and
    the engine decides that on the claimed page.
    """

    def __init__(
        self,
        most_spare: dict[int, int] | None,
        channel_ids: set[int] | None,
        after: _OrderKey | None,
    ) -> None:
        qs = WorkItem.objects.filter(status=WorkItemStatus.WAITING)
        if most_spare is not None and channel_ids is not None:
            fits = Q(size_units__isnull=True, queue_id__in=sorted(most_spare))
            by_spare: dict[int, list[int]] = defaultdict(list)
            for queue_id, spare in most_spare.items():
                by_spare[spare].append(queue_id)
            for spare, queue_ids in sorted(by_spare.items()):
                fits |= Q(queue_id__in=sorted(queue_ids), size_units__lte=spare)
            qs = qs.filter(fits, channel_id__in=sorted(channel_ids))
        if after is not None:
            qs = self._after(qs, after)
        self.qs = qs.order_by(*_ORDER)

    @staticmethod
    def _after(qs: models.QuerySet[WorkItem], key: _OrderKey, op: str = ">") -> Any:
        # A row-value comparison, which PostgreSQL turns into a range on the waiting-order
        # index: the next page starts where the last one ended instead of scanning from the
        # front of the line (spelt out as ORs, every page re-read all the pages before it).
        return qs.extra(  # noqa: S610 - fixed SQL, values are parameters
            where=[
                "(routing_priority, priority, secondary_priority, enqueued_at, id)"
                f" {op} (%s, %s, %s, %s, %s)"
            ],
            params=list(key),
        )

    def peek(self, limit: int) -> list[tuple[int, _OrderKey]]:
        """(queue id, order key) of the next page, without locking it."""
        return [
            (queue_id, (rp, p, sp, eq, pk))
            for queue_id, rp, p, sp, eq, pk in self.qs.values_list("queue_id", *_ORDER)[:limit]
        ]

    def claim(self, queue_ids: set[int], *, up_to: _OrderKey) -> list[Any]:
        """Lock and read the page that ``peek`` saw (now that its agents are locked): the same
        range of the line, in the same queues. Items that arrived meanwhile in other queues
        are left to the next pass, which their arrival asked for."""
        qs = self._after(self.qs.filter(queue_id__in=sorted(queue_ids)), up_to, "<=")
        # SKIP LOCKED: items another transaction holds (a cancel, a transfer) are simply not
        # ours this time; the next pass sees them.
        # Whether anyone refused the item, and whether it requires skills, in the same
        # statement: then only those items' refusals and requirements are read.
        refused = AgentWork.objects.filter(
            item_id=OuterRef("pk"),
            state__in=[AgentWorkState.DECLINED, AgentWorkState.TIMED_OUT],
        )
        return list(
            qs.select_for_update(skip_locked=True, of=("self",))
            .annotate(
                refused=Exists(refused),
                has_skills=Exists(ItemSkill.objects.filter(item_id=OuterRef("pk"))),
            )
            .values_list(*_PAGE_FIELDS, "refused", "has_skills", named=True)
        )


def _requirements(
    rows: Sequence[Any], *, raw_sql: bool | None = None
) -> dict[int, tuple[engine.Requirement, ...]]:
    """The requirements of these claimed rows (items with ``has_skills``), by item id, with
    their skills' names: one statement, none for no rows."""
    if not rows:
        return {}
    entered = {row.id: row.enqueued_at for row in rows}
    if _raw_sql() if raw_sql is None else raw_sql:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT r.item_id, r.skill_id, r.min_level, r.additional, r.drop_after_seconds,"
                " s.name FROM routing_itemskill r JOIN routing_skill s ON s.id = r.skill_id"
                " WHERE r.item_id = ANY(%s) ORDER BY r.item_id, r.id",
                [sorted(entered)],
            )
            found = cur.fetchall()
    else:
        found = list(
            ItemSkill.objects.filter(item_id__in=sorted(entered))
            .order_by("item_id", "id")
            .values_list(
                "item_id",
                "skill_id",
                "min_level",
                "additional",
                "drop_after_seconds",
                "skill__name",
            )
        )
    needs: dict[int, list[engine.Requirement]] = defaultdict(list)
    for item_id, skill_id, level, additional, drop_after, name in found:
        needs[item_id].append(
            requirement(
                skill_id=skill_id,
                min_level=hundredths(level),
                additional=additional,
                drop_after_seconds=drop_after,
                name=name,
                enqueued_at=entered[item_id],
            )
        )
    return {item_id: tuple(item_needs) for item_id, item_needs in needs.items()}


def _with_skills(
    agents: dict[int, engine.AgentView], *, raw_sql: bool | None = None
) -> dict[int, engine.AgentView]:
    """``agents`` with their skills (one statement); read after the lock, so they are the
    skills of the agents as locked."""
    if not agents:
        return agents
    if _raw_sql() if raw_sql is None else raw_sql:
        skills: dict[int, dict[int, int]] = defaultdict(dict)
        with connection.cursor() as cur:
            cur.execute(
                "SELECT agent_id, skill_id, level FROM routing_agentskill WHERE agent_id = ANY(%s)",
                [sorted(agents)],
            )
            for agent_id, skill_id, level in cur.fetchall():
                skills[agent_id][skill_id] = hundredths(level)
    else:
        skills = agent_skills(AgentSkill.objects.filter(agent_id__in=sorted(agents)))
    return {
        agent_id: replace(view, skills=skills[agent_id]) if agent_id in skills else view
        for agent_id, view in agents.items()
    }


def _queue_configs(queue_ids: Iterable[int]) -> dict[int, QueueConfig]:
    return {
        q["id"]: QueueConfig(
            q["routing_config__routing_model"], q["routing_config__push_timeout_seconds"], q["name"]
        )
        for q in Queue.objects.filter(id__in=list(queue_ids)).values(
            "id", "name", "routing_config__routing_model", "routing_config__push_timeout_seconds"
        )
    }
