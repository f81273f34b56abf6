"""Routing services: every write to work items and agent work goes through these functions.

Lock order, everywhere, so no two transactions wait on each other in a cycle:
    routing pass lock -> agent rows (by id) -> agent work rows -> work item rows.
Item claims use ``SKIP LOCKED``: a pass never waits on an item another transaction holds.
Side effects (pushes to consoles, routing requests) leave only after commit.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models import (
    Case,
    Exists,
    F,
    Max,
    OuterRef,
    ProtectedError,
    Q,
    RestrictedError,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from omnirouter import realtime
from presence.models import Agent, PresenceStatus
from routing import engine
from routing.dispatch import request_routing
from routing.errors import Conflict, Forbidden, NotFound, RoutingError
from routing.models import (
    LIVE_STATES,
    ActionLog,
    AgentWork,
    AgentWorkState,
    Queue,
    QueueMembership,
    RoutingConfiguration,
    ServiceChannel,
    WorkItem,
    WorkItemStatus,
)
from routing.selectors import PRESENCE_FIELDS, presence_payload, presence_payloads, work_payload

logger = logging.getLogger(__name__)

# Arbitrary, fixed: the advisory lock that serialises routing passes across workers.
_PASS_LOCK_KEY = 0x0A11_0C8E


# --- Intake --------------------------------------------------------------------------------


def enqueue_work(
    *,
    queue: Queue,
    channel: ServiceChannel,
    subject: str,
    priority: int = 5,
    payload: dict[str, Any] | None = None,
    record: models.Model | None = None,
    created_by: AbstractBaseUser | None = None,
    preferred_agent: Agent | None = None,
    preferred_for: timedelta | None = None,
    now: datetime | None = None,
) -> WorkItem:
    """Create a waiting work item in ``queue``.

    Size comes from the queue's routing configuration (units or a percentage of capacity), else
    the channel's default. Side effects: a routing pass is requested and the queue's supervisors
    are told, both after commit.
    """
    now = now or timezone.now()
    if not 1 <= priority <= 10:
        raise RoutingError(_("Priority must be between 1 (most urgent) and 10."), "priority")
    config = queue.routing_config
    size_units, size_percent = _size_from(config, channel)
    item = WorkItem(
        queue=queue,
        channel=channel,
        subject=subject,
        priority=priority,
        payload=payload or {},
        routing_priority=config.routing_priority,
        size_units=size_units,
        size_percent=size_percent,
        created_at=now,
        enqueued_at=now,
        created_by=created_by if created_by and created_by.is_authenticated else None,
        preferred_agent=preferred_agent,
        preferred_until=now + preferred_for if preferred_agent and preferred_for else None,
    )
    if record is not None:
        item.record_type = ContentType.objects.get_for_model(record)
        item.record_id = str(record.pk)
    with transaction.atomic():
        item.save()
        _queue_changed(queue.pk)
        request_routing()
    return item


def cancel_work_item(*, item_id: int, now: datetime | None = None) -> WorkItem:
    """Cancel an item that is waiting or offered (the customer left, the case was withdrawn).

    A pending offer is withdrawn and its capacity freed. Assigned items are the agent's to close.
    """
    now = now or timezone.now()
    return _retry_if_live_work_moved(lambda: _cancel_work_item(item_id, now), item_id)


def _cancel_work_item(item_id: int, now: datetime) -> WorkItem:
    with transaction.atomic():
        item, live = _lock_item_and_live_work(item_id)
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
            _end_work(live, AgentWorkState.CANCELED, now=now, note="Item canceled.")
        item.status = WorkItemStatus.CANCELED
        item.ended_at = now
        item.save(update_fields=["status", "ended_at"])
        _queue_changed(item.queue_id)
        if live is not None:
            request_routing()
    return item


# --- The routing pass ----------------------------------------------------------------------


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
    cursor: tuple[int, int, datetime, int] | None = None
    offers = batches = considered = 0
    while batches < max_batches:
        batch_now = now or timezone.now()
        with transaction.atomic():
            result = _route_batch(now=batch_now, batch_size=batch_size, after=cursor)
        batches += 1
        offers += result.offers
        considered += result.claimed
        if result.last_key is None or result.claimed < batch_size or not result.agents_left:
            break
        cursor = result.last_key
    return PassResult(offers=offers, batches=batches, items_considered=considered)


@dataclass(frozen=True)
class _BatchResult:
    offers: int
    claimed: int
    last_key: tuple[int, int, datetime, int] | None
    agents_left: bool


def _route_batch(
    *, now: datetime, batch_size: int, after: tuple[int, int, datetime, int] | None
) -> _BatchResult:
    _take_pass_lock()
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
    refused = _refusals([row.id for row in page if row.refused])
    online_preferred = _online_preferred(page)

    no_refusals: dict[int, datetime] = {}
    items = [
        engine.ItemView(
            id=row.id,
            queue_id=row.queue_id,
            channel_id=row.channel_id,
            routing_priority=row.routing_priority,
            priority=row.priority,
            enqueued_at=row.enqueued_at,
            routing_model=configs[row.queue_id].routing_model,
            size_units=row.size_units,
            size_percent=row.size_percent,
            refused_by=refused.get(row.id, no_refusals),
            preferred_agent_id=(
                row.preferred_agent_id
                if (row.preferred_agent_id, row.channel_id) in online_preferred
                else None
            ),
            preferred_until=row.preferred_until,
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
    _write_offers(offers, rows_by_id, configs, locked, now)

    taken: dict[int, int] = defaultdict(int)
    for offer in offers:
        taken[offer.agent_id] += offer.units
    # Room left with the agents of this batch, or with members of queues it did not touch.
    still_room = any(a.capacity - a.used - taken[a.id] > 0 for a in agents.values()) or bool(
        set(most_spare) - page_queues
    )
    return _BatchResult(
        offers=len(offers),
        claimed=len(peeked),
        last_key=peeked[-1][1],
        agents_left=still_room,
    )


def _take_pass_lock() -> None:
    # Passes are serialised so cross-queue priority holds with any number of workers: a pass
    # that ran beside another could hand an agent lower-priority work while the other pass held
    # the higher-priority items locked. Waiting here is short (one batch); SQLite has one writer.
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [_PASS_LOCK_KEY])


def _routable_agents_q(now: datetime, prefix: str = "") -> Q:
    """Agents who may be offered work (``prefix`` reaches them from a related model)."""
    grace = timedelta(seconds=settings.CONSOLE_GRACE_SECONDS)
    return Q(**{f"{prefix}status__is_online": True}) & (
        Q(**{f"{prefix}presence_config__console_required": False})
        | Q(**{f"{prefix}console_seen_at__gte": now - grace})
    )


@dataclass(frozen=True)
class _LockedAgents:
    agents: dict[int, engine.AgentView]
    auto_accept: set[int]
    # id -> the values of selectors.PRESENCE_FIELDS as locked (for the presence events)
    presence: dict[int, tuple[Any, ...]]


# The routable agents with room of ``_routable_agents_q``, spelt in SQL for the two statements
# below that run on every batch (Django took longer to compile their ORM forms than PostgreSQL
# to run them; tests/routing run both on PostgreSQL through every scenario).
_AGENTS_WITH_ROOM_SQL = (
    " FROM presence_agent a"
    " JOIN presence_presencestatus s ON s.id = a.status_id"
    " JOIN presence_presenceconfiguration c ON c.id = a.presence_config_id"
    " WHERE a.used_capacity < a.capacity AND s.is_online"
    " AND (NOT c.console_required OR a.console_seen_at >= %(seen_after)s)"
)


def _room_by_queue(now: datetime) -> tuple[dict[int, int], set[int]]:
    """For each queue with a routable member with room, the most spare capacity among them;
    and the channels those members are available for (aggregates, no locks)."""
    if connection.vendor == "postgresql":
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
    with_room = Q(_routable_agents_q(now), used_capacity__lt=F("capacity"))
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


def _lock_agents_with_room(now: datetime, queue_ids: set[int]) -> _LockedAgents:
    """The routable agents with room in these queues, locked (in id order), with what the batch
    needs to know about them."""
    # Locked so that accept/decline/close/presence changes wait for this batch, and the capacity
    # we read is the capacity we write against.
    if connection.vendor == "postgresql":
        return _lock_agents_with_room_pg(now, queue_ids)
    members = QueueMembership.objects.filter(queue_id__in=queue_ids).values("agent_id")
    rows = list(
        Agent.objects.select_for_update(of=("self",))
        .filter(_routable_agents_q(now), used_capacity__lt=F("capacity"), id__in=members)
        .order_by("id")
        .values_list(*PRESENCE_FIELDS, "last_assigned_at", "presence_config__auto_accept")
    )
    if not rows:
        return _LockedAgents({}, set(), {})
    status_channels = _status_channels({r[1] for r in rows})
    # The memberships of the same agents, selected by the same conditions rather than by a
    # list of a thousand ids (which Django spends longer compiling than PostgreSQL running).
    # Rows of agents that changed in between are not looked up: only locked agents count.
    memberships: dict[int, list[int]] = defaultdict(list)
    for agent_id, queue_id in QueueMembership.objects.filter(
        _routable_agents_q(now, prefix="agent__"),
        agent__used_capacity__lt=F("agent__capacity"),
        agent_id__in=members,
    ).values_list("agent_id", "queue_id"):
        memberships[agent_id].append(queue_id)
    none: frozenset[int] = frozenset()
    agents = {}
    presence = {}
    auto_accept = set()
    for row in rows:
        agent_id, status_id, _, _, _, capacity, used, open_count, last_assigned_at, auto = row
        agents[agent_id] = engine.AgentView(
            id=agent_id,
            capacity=capacity,
            used=used,
            open_count=open_count,
            last_assigned_at=last_assigned_at,
            channel_ids=status_channels.get(status_id, none),
            queue_ids=frozenset(memberships[agent_id]),
        )
        presence[agent_id] = row[: len(PRESENCE_FIELDS)]
        if auto:
            auto_accept.add(agent_id)
    return _LockedAgents(agents, auto_accept, presence)


def _lock_agents_with_room_pg(now: datetime, queue_ids: set[int]) -> _LockedAgents:
    # One statement: the agents' fields, their queues and their status's channels.
    with connection.cursor() as cur:
        cur.execute(
            "SELECT a.id, a.status_id, s.name, s.is_online, a.status_changed_at, a.capacity,"  # noqa: S608 - constant SQL, values are parameters
            " a.used_capacity, a.open_count, a.last_assigned_at, c.auto_accept,"
            " ARRAY(SELECT m.queue_id FROM routing_queuemembership m WHERE m.agent_id = a.id),"
            " ARRAY(SELECT sc.servicechannel_id FROM presence_presencestatus_channels sc"
            " WHERE sc.presencestatus_id = a.status_id)"
            + _AGENTS_WITH_ROOM_SQL
            + " AND a.id IN (SELECT m.agent_id FROM routing_queuemembership m"
            " WHERE m.queue_id = ANY(%(queues)s))"
            " ORDER BY a.id FOR UPDATE OF a",
            {
                "seen_after": now - timedelta(seconds=settings.CONSOLE_GRACE_SECONDS),
                "queues": sorted(queue_ids),
            },
        )
        rows = cur.fetchall()
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
            capacity=capacity,
            used=used,
            open_count=open_count,
            last_assigned_at=last_assigned_at,
            channel_ids=channels,
            queue_ids=frozenset(row[10]),
        )
        presence[agent_id] = row[: len(PRESENCE_FIELDS)]
        if auto:
            auto_accept.add(agent_id)
    return _LockedAgents(agents, auto_accept, presence)


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
    "enqueued_at",
    "size_units",
    "size_percent",
    "subject",
    "preferred_agent_id",
    "preferred_until",
)


_OrderKey = tuple[int, int, datetime, int]
_ORDER = ("routing_priority", "priority", "enqueued_at", "id")


class _WaitingFilter:
    """The waiting items a batch may take: in queues whose members have room, on channels they
    are available for, after the pass's last page (or simply all waiting items, without
    ``most_spare`` and ``channel_ids``).

    Items larger than the most spare capacity of their queue's members cannot be offered in
    this batch: leaving them out changes no decision, and fills the page with items that can
    be (as agents fill up, a page of everything would be mostly items nobody has room for).
    Percentage sizes depend on each agent's capacity, so those items always come.
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
            where=[f"(routing_priority, priority, enqueued_at, id) {op} (%s, %s, %s, %s)"],
            params=list(key),
        )

    def peek(self, limit: int) -> list[tuple[int, _OrderKey]]:
        """(queue id, order key) of the next page, without locking it."""
        return [
            (queue_id, (rp, p, eq, pk))
            for queue_id, rp, p, eq, pk in self.qs.values_list("queue_id", *_ORDER)[:limit]
        ]

    def claim(self, queue_ids: set[int], *, up_to: _OrderKey) -> list[Any]:
        """Lock and read the page that ``peek`` saw (now that its agents are locked): the same
        range of the line, in the same queues. Items that arrived meanwhile in other queues
        are left to the next pass, which their arrival asked for."""
        qs = self._after(self.qs.filter(queue_id__in=sorted(queue_ids)), up_to, "<=")
        # SKIP LOCKED: items another transaction holds (a cancel, a transfer) are simply not
        # ours this time; the next pass sees them.
        # Whether anyone refused the item, in the same statement: refusals are rare, and then
        # only the refused items' refusals are read.
        refused = AgentWork.objects.filter(
            item_id=OuterRef("pk"),
            state__in=[AgentWorkState.DECLINED, AgentWorkState.TIMED_OUT],
        )
        return list(
            qs.select_for_update(skip_locked=True, of=("self",))
            .annotate(refused=Exists(refused))
            .values_list(*_PAGE_FIELDS, "refused", named=True)
        )


@dataclass(frozen=True)
class _QueueConfig:
    routing_model: str
    push_timeout_seconds: int
    queue_name: str


def _queue_configs(queue_ids: Iterable[int]) -> dict[int, _QueueConfig]:
    return {
        q["id"]: _QueueConfig(
            q["routing_config__routing_model"], q["routing_config__push_timeout_seconds"], q["name"]
        )
        for q in Queue.objects.filter(id__in=list(queue_ids)).values(
            "id", "name", "routing_config__routing_model", "routing_config__push_timeout_seconds"
        )
    }


def _refusals(item_ids: Sequence[int]) -> dict[int, dict[int, datetime]]:
    refused: dict[int, dict[int, datetime]] = defaultdict(dict)
    if not item_ids:
        return refused
    rows = (
        AgentWork.objects.filter(
            item_id__in=item_ids, state__in=[AgentWorkState.DECLINED, AgentWorkState.TIMED_OUT]
        )
        .values("item_id", "agent_id")
        .annotate(last=Max("ended_at"))
    )
    for row in rows:
        refused[row["item_id"]][row["agent_id"]] = row["last"]
    return refused


def _online_preferred(page: list[Any]) -> set[tuple[int, int]]:
    """(agent, channel) pairs of preferred agents who are online for that channel right now."""
    wanted = {r.preferred_agent_id for r in page if r.preferred_agent_id}
    if not wanted:
        return set()
    rows = Agent.objects.filter(id__in=wanted, status__is_online=True).values_list(
        "id", "status__channels"
    )
    return {(agent_id, channel_id) for agent_id, channel_id in rows if channel_id}


@dataclass
class _NewWork:
    """An agent work row about to be written for one offer."""

    offer: engine.Offer
    row: Any  # the claimed page's row
    state: str
    expires_at: datetime | None
    opened_at: datetime | None
    auto: bool
    pk: int | None = None


def _write_offers(
    offers: list[engine.Offer],
    rows: dict[int, Any],
    configs: dict[int, _QueueConfig],
    locked: _LockedAgents,
    now: datetime,
) -> None:
    if not offers:
        return
    auto = locked.auto_accept
    deadlines = {
        queue_id: now + timedelta(seconds=config.push_timeout_seconds)
        for queue_id, config in configs.items()
    }
    works = []
    for offer in offers:
        row = rows[offer.item_id]
        is_auto = offer.agent_id in auto
        works.append(
            _NewWork(
                offer=offer,
                row=row,
                state=AgentWorkState.OPENED if is_auto else AgentWorkState.PUSHED,
                expires_at=None if is_auto else deadlines[row.queue_id],
                opened_at=now if is_auto else None,
                auto=is_auto,
            )
        )
    item_payloads = _write_works_and_items(works, configs, now)

    units: dict[int, int] = defaultdict(int)
    counts: dict[int, int] = defaultdict(int)
    for offer in offers:
        units[offer.agent_id] += offer.units
        counts[offer.agent_id] += 1
    _raise_load(units, counts, now)

    channels = {c[0]: c[1:] for c in ServiceChannel.objects.values_list("id", "key", "label")}
    pushed_at = now.isoformat()
    iso = {d: d.isoformat() for d in deadlines.values()}
    iso[now] = pushed_at
    iso[None] = None
    messages = []
    for work in works:
        row = work.row
        channel_key, channel_label = channels.get(row.channel_id, (None, None))
        payload = {
            "id": work.pk,
            "item_id": work.offer.item_id,
            "state": work.state,
            "subject": row.subject,
            "queue": configs[row.queue_id].queue_name,
            "queue_id": row.queue_id,
            "channel": channel_key,
            "channel_label": channel_label,
            "units": work.offer.units,
            "pushed_at": pushed_at,
            "expires_at": iso[work.expires_at],
            "opened_at": iso[work.opened_at],
            "ended_at": None,
            "enqueued_at": row.enqueued_at.isoformat(),
            "why": work.offer.reason.get("text", ""),
            "payload": item_payloads.get(work.offer.item_id) or {},
            "priority": row.priority,
        }
        messages.append((realtime.agent_group(work.offer.agent_id), realtime.OFFER, payload))
    for queue_id in {rows[o.item_id].queue_id for o in offers}:
        messages.append(
            (realtime.queue_group(queue_id), realtime.QUEUE_CHANGED, {"queue_id": queue_id})
        )
    # The agents' new load is known (their rows are locked and were raised by exactly this
    # much): no need to read it back.
    for agent_id, added in units.items():
        row = dict(zip(PRESENCE_FIELDS, locked.presence[agent_id], strict=True))
        row["used_capacity"] += added
        row["open_count"] += counts[agent_id]
        messages.append(
            (realtime.agent_group(agent_id), realtime.PRESENCE_CHANGED, presence_payload(row))
        )
    realtime.publish_many(messages)


def _write_works_and_items(
    works: list[_NewWork], configs: dict[int, _QueueConfig], now: datetime
) -> dict[int, Any]:
    """Insert the agent work rows (setting ``pk`` on each), set the items offered or assigned,
    and return the items' payloads."""
    if connection.vendor != "postgresql":
        _insert_works(works, now)
        return _mark_items_taken(works)
    # One statement from arrays of plain values: the items are updated (returning what the
    # agent work copies from them, and their payloads) and the agent work rows inserted from
    # that. Building a thousand model instances and VALUES tuples, and adapting a thousand
    # timestamps, cost more than the database's own work (measured in bench/). The partial
    # unique index still refuses a second live offer for an item.
    with connection.cursor() as cur:
        cur.execute(
            "WITH v AS (SELECT * FROM unnest(%(items)s::bigint[], %(agents)s::bigint[],"
            " %(units)s::int[], %(timeouts)s::int[], %(auto)s::bool[], %(reasons)s::text[])"
            " AS v(item_id, agent_id, units, timeout, auto, reason)),"
            " taken AS (UPDATE routing_workitem w"
            " SET status = CASE WHEN v.auto THEN %(assigned)s ELSE %(offered)s END"
            " FROM v WHERE w.id = v.item_id"
            " RETURNING w.id, w.queue_id, w.channel_id, w.enqueued_at, w.payload),"
            " made AS (INSERT INTO routing_agentwork (item_id, agent_id, queue_id, channel_id,"
            " state, units, pushed_at, expires_at, opened_at, enqueued_at, routing_reason,"
            " auto_accepted, decline_reason, end_note)"
            " SELECT v.item_id, v.agent_id, t.queue_id, t.channel_id,"
            " CASE WHEN v.auto THEN %(opened)s ELSE %(pushed)s END, v.units, %(now)s,"
            " CASE WHEN v.auto THEN NULL ELSE %(now)s + v.timeout * interval '1 second' END,"
            " CASE WHEN v.auto THEN %(now)s END, t.enqueued_at, v.reason::jsonb, v.auto, '', ''"
            " FROM v JOIN taken t ON t.id = v.item_id RETURNING item_id, id)"
            " SELECT made.item_id, made.id, taken.payload"
            " FROM made JOIN taken ON taken.id = made.item_id",
            {
                "items": [w.offer.item_id for w in works],
                "agents": [w.offer.agent_id for w in works],
                "units": [w.offer.units for w in works],
                "timeouts": [configs[w.row.queue_id].push_timeout_seconds for w in works],
                "auto": [w.auto for w in works],
                "reasons": [json.dumps(w.offer.reason) for w in works],
                "assigned": WorkItemStatus.ASSIGNED.value,
                "offered": WorkItemStatus.OFFERED.value,
                "opened": AgentWorkState.OPENED.value,
                "pushed": AgentWorkState.PUSHED.value,
                "now": now,
            },
        )
        rows = cur.fetchall()
    ids = {item_id: pk for item_id, pk, _ in rows}
    for work in works:
        work.pk = ids[work.offer.item_id]
    # Django reads jsonb as text and decodes it in the field; so do we.
    return {
        item_id: json.loads(payload) if isinstance(payload, str) else payload
        for item_id, _, payload in rows
    }


def _mark_items_taken(works: list[_NewWork]) -> dict[int, Any]:
    """SQLite: set the items offered or assigned; return their payloads."""
    offered = [w.offer.item_id for w in works if not w.auto]
    assigned = [w.offer.item_id for w in works if w.auto]
    if offered:
        WorkItem.objects.filter(id__in=offered).update(status=WorkItemStatus.OFFERED)
    if assigned:
        WorkItem.objects.filter(id__in=assigned).update(status=WorkItemStatus.ASSIGNED)
    return dict(WorkItem.objects.filter(id__in=offered + assigned).values_list("id", "payload"))


def _insert_works(works: list[_NewWork], now: datetime) -> None:
    """SQLite: insert the agent work rows and set ``pk`` on each (read back: bulk_create
    returns no ids there)."""
    AgentWork.objects.bulk_create(
        AgentWork(
            item_id=w.offer.item_id,
            agent_id=w.offer.agent_id,
            queue_id=w.row.queue_id,
            channel_id=w.row.channel_id,
            state=w.state,
            units=w.offer.units,
            pushed_at=now,
            expires_at=w.expires_at,
            opened_at=w.opened_at,
            enqueued_at=w.row.enqueued_at,
            routing_reason=w.offer.reason,
            auto_accepted=w.auto,
        )
        for w in works
    )
    ids = dict(
        AgentWork.objects.filter(
            item_id__in=[w.offer.item_id for w in works], state__in=LIVE_STATES
        ).values_list("item_id", "id")
    )
    for work in works:
        work.pk = ids[work.offer.item_id]


def _raise_load(units: dict[int, int], counts: dict[int, int], now: datetime) -> None:
    """Add offered units and items to the agents' load (rows already locked by the batch)."""
    agent_ids = sorted(units)
    if connection.vendor != "postgresql":
        Agent.objects.filter(id__in=agent_ids).update(
            used_capacity=F("used_capacity")
            + Case(*(When(id=a, then=Value(u)) for a, u in units.items()), default=Value(0)),
            open_count=F("open_count")
            + Case(*(When(id=a, then=Value(c)) for a, c in counts.items()), default=Value(0)),
            last_assigned_at=now,
        )
        return
    # One UPDATE ... FROM unnest(): a CASE with a branch per agent took Django longer to
    # compile than PostgreSQL to run. The CHECK constraint still caps used capacity.
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE presence_agent AS a SET used_capacity = a.used_capacity + v.units,"
            " open_count = a.open_count + v.n, last_assigned_at = %s"
            " FROM unnest(%s::bigint[], %s::int[], %s::int[]) AS v(id, units, n)"
            " WHERE a.id = v.id",
            [now, agent_ids, [units[a] for a in agent_ids], [counts[a] for a in agent_ids]],
        )


# --- Agent actions ---------------------------------------------------------------------------


def accept_work(*, work_id: int, agent: Agent, now: datetime | None = None) -> AgentWork:
    """Accept a pushed offer: a compare-and-set on (still pushed, not expired, this agent).

    A duplicate or late accept changes nothing and raises ``Conflict`` saying why.
    """
    now = now or timezone.now()
    with transaction.atomic():
        changed = AgentWork.objects.filter(
            id=work_id, agent=agent, state=AgentWorkState.PUSHED, expires_at__gt=now
        ).update(state=AgentWorkState.OPENED, opened_at=now)
        work = _get_own_work(work_id, agent)
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
        _work_changed(work)
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
        raise RoutingError(_("A reason is required to decline this work."), "reason_required")
    allowed = list(config.decline_reasons.filter(active=True).values_list("label", flat=True))
    if reason and allowed and reason not in allowed:
        raise RoutingError(
            _("Unknown decline reason. Choose one of: %(reasons)s.")
            % {"reasons": ", ".join(allowed)},
            "reason",
        )
    with transaction.atomic():
        work = _lock_own_work_in_state(
            work_id,
            agent,
            AgentWorkState.PUSHED,
            _("This work can no longer be declined (%(state)s)."),
        )
        _end_work(work, AgentWorkState.DECLINED, now=now, reason=reason)
        _return_item(work.item_id)
        if config.status_after_decline_id:
            _apply_status(agent.pk, config.status_after_decline_id, now=now)
        request_routing()
    return work


def close_work(
    *, work_id: int, agent: Agent, note: str = "", now: datetime | None = None
) -> AgentWork:
    """Close accepted work: the item is done, the agent's capacity is freed."""
    now = now or timezone.now()
    with transaction.atomic():
        work = _lock_own_work_in_state(
            work_id,
            agent,
            AgentWorkState.OPENED,
            _("Only accepted work can be closed (%(state)s)."),
        )
        _end_work(work, AgentWorkState.CLOSED, now=now, note=note)
        WorkItem.objects.filter(id=work.item_id).update(status=WorkItemStatus.CLOSED, ended_at=now)
        request_routing()
    return work


def transfer_work(
    *, work_id: int, agent: Agent, queue: Queue, note: str = "", now: datetime | None = None
) -> AgentWork:
    """Hand accepted work to another queue: it waits there as a new entry, routed afresh."""
    now = now or timezone.now()
    with transaction.atomic():
        work = _lock_own_work_in_state(
            work_id,
            agent,
            AgentWorkState.OPENED,
            _("Only accepted work can be transferred (%(state)s)."),
        )
        _end_work(work, AgentWorkState.TRANSFERRED, now=now, note=note or f"To {queue.name}")
        _requeue(work.item_id, queue, now=now)
        request_routing()
    return work


# --- Presence --------------------------------------------------------------------------------


def set_presence(
    *,
    agent: Agent,
    status: PresenceStatus | None,
    now: datetime | None = None,
    actor: AbstractBaseUser | None = None,
    check_allowed: bool = True,
) -> Agent:
    """Change an agent's presence status (``None`` is offline).

    Offers for channels the new status does not cover go back to their queues (accepted work
    stays). Going online requests a routing pass. ``actor`` other than the agent is logged.
    """
    now = now or timezone.now()
    if status is not None and check_allowed:
        allowed = agent.presence_config.allowed_statuses.all()
        if allowed.exists() and not allowed.filter(pk=status.pk).exists():
            raise RoutingError(
                _("Status '%(status)s' is not available to you.") % {"status": status.name},
                "status",
            )
    with transaction.atomic():
        _lock_agents([agent.pk])
        _apply_status(agent.pk, status.pk if status else None, now=now)
        if actor is not None and getattr(actor, "pk", None) != agent.user_id:
            ActionLog.objects.create(
                at=now,
                actor=actor,
                verb="set_presence",
                agent=agent,
                detail={"status": status.name if status else None},
            )
    agent.refresh_from_db()
    return agent


def touch_console(*, agent: Agent, now: datetime | None = None) -> None:
    """Record that the agent's console is alive (on connect and on each heartbeat)."""
    now = now or timezone.now()
    grace = timedelta(seconds=settings.CONSOLE_GRACE_SECONDS)
    was_stale = Agent.objects.filter(
        Q(console_seen_at__lt=now - grace) | Q(console_seen_at__isnull=True),
        pk=agent.pk,
        status__is_online=True,
    ).exists()
    Agent.objects.filter(pk=agent.pk).update(console_seen_at=now)
    if was_stale:
        request_routing()


def apply_presence_config(
    *, agent_ids: Sequence[int] | None = None, config_id: int | None = None
) -> int:
    """Bring agents' capacity in line with their presence configuration (after an admin edit).

    Capacity in force never drops below what an agent holds; it settles as work closes.
    """
    qs = Agent.objects.all()
    if agent_ids is not None:
        qs = qs.filter(id__in=agent_ids)
    if config_id is not None:
        qs = qs.filter(presence_config_id=config_id)
    with transaction.atomic():
        ids = _lock_agents(list(qs.values_list("id", flat=True)))
        changed = 0
        for agent in Agent.objects.filter(id__in=ids).select_related("presence_config"):
            new = agent.presence_config.capacity
            if agent.configured_capacity != new or agent.capacity != max(new, agent.used_capacity):
                Agent.objects.filter(pk=agent.pk).update(
                    configured_capacity=new, capacity=Greatest(Value(new), F("used_capacity"))
                )
                realtime.publish(*_presence_message(agent.pk))
                changed += 1
        if changed:
            request_routing()
    return changed


# --- Supervisor actions ----------------------------------------------------------------------


def move_item(
    *, item_id: int, queue: Queue, actor: AbstractBaseUser, now: datetime | None = None
) -> WorkItem:
    """Move a waiting (or offered) item to another queue; a pending offer is withdrawn."""
    now = now or timezone.now()
    return _retry_if_live_work_moved(lambda: _move_item(item_id, queue, actor, now), item_id)


def _move_item(item_id: int, queue: Queue, actor: AbstractBaseUser, now: datetime) -> WorkItem:
    with transaction.atomic():
        item, live = _lock_item_and_live_work(item_id)
        if item.status not in (WorkItemStatus.WAITING, WorkItemStatus.OFFERED):
            raise Conflict(_("Only waiting or offered items can be moved."), item.status)
        if live is not None:
            _end_work(live, AgentWorkState.CANCELED, now=now, note="Moved by a supervisor.")
        old_queue = item.queue_id
        _requeue(item_id, queue, now=now, keep_age=True)
        ActionLog.objects.create(
            at=now,
            actor=actor,
            verb="move_item",
            item_id=item_id,
            detail={"from_queue": old_queue, "to_queue": queue.pk},
        )
        _queue_changed(old_queue)
        request_routing()
    item.refresh_from_db()
    return item


def push_item_to_agent(
    *, item_id: int, agent: Agent, actor: AbstractBaseUser, now: datetime | None = None
) -> AgentWork:
    """Offer a waiting item to a chosen agent, past the routing model (capacity still holds)."""
    now = now or timezone.now()
    with transaction.atomic():
        _lock_agents([agent.pk])
        item = _lock_item(item_id)
        if item.status != WorkItemStatus.WAITING:
            raise Conflict(_("Only waiting items can be pushed to an agent."), item.status)
        fresh = Agent.objects.select_related("status", "presence_config").get(pk=agent.pk)
        if fresh.status is None or not fresh.status.is_online:
            raise Conflict(_("%(agent)s is not online.") % {"agent": fresh}, "offline")
        units = item.units_for(fresh.capacity)
        if fresh.spare_capacity < units:
            raise Conflict(
                _("%(agent)s has %(spare)s spare units; this item needs %(units)s.")
                % {"agent": fresh, "spare": fresh.spare_capacity, "units": units},
                "no_capacity",
            )
        config = item.queue.routing_config
        is_auto = fresh.presence_config.auto_accept
        work = AgentWork.objects.create(
            item=item,
            agent=fresh,
            queue_id=item.queue_id,
            channel_id=item.channel_id,
            state=AgentWorkState.OPENED if is_auto else AgentWorkState.PUSHED,
            units=units,
            pushed_at=now,
            enqueued_at=item.enqueued_at,
            expires_at=None if is_auto else now + timedelta(seconds=config.push_timeout_seconds),
            opened_at=now if is_auto else None,
            auto_accepted=is_auto,
            routing_reason={
                "rule": "supervisor",
                "actor": getattr(actor, "username", ""),
                "text": f"Pushed by supervisor {getattr(actor, 'username', '')}.",
            },
        )
        WorkItem.objects.filter(pk=item.pk).update(
            status=WorkItemStatus.ASSIGNED if is_auto else WorkItemStatus.OFFERED
        )
        Agent.objects.filter(pk=fresh.pk).update(
            used_capacity=F("used_capacity") + units,
            open_count=F("open_count") + 1,
            last_assigned_at=now,
        )
        ActionLog.objects.create(
            at=now,
            actor=actor,
            verb="push_item",
            item=item,
            agent=fresh,
            detail={"work_id": work.pk},
        )
        realtime.publish(realtime.agent_group(fresh.pk), realtime.OFFER, work_payload(work))
        realtime.publish(*_presence_message(fresh.pk))
        _queue_changed(item.queue_id)
    return work


# --- The sweep -------------------------------------------------------------------------------


def sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Periodic safety net: expire offers, drop lost consoles, fix capacity drift, route."""
    now = now or timezone.now()
    expired = expire_offers(now=now)
    offline = expire_lost_consoles(now=now)
    drift = reconcile_capacity()
    routed = route_waiting_work().offers
    return {"expired": expired, "offline": offline, "drift": drift, "offers": routed}


def expire_offers(*, now: datetime | None = None, limit: int = 500) -> int:
    """Time out pushed offers past their deadline; their items go back in line."""
    now = now or timezone.now()
    due = list(
        AgentWork.objects.filter(state=AgentWorkState.PUSHED, expires_at__lte=now)
        .order_by("expires_at")
        .values_list("id", "agent_id")[:limit]
    )
    if not due:
        return 0
    count = 0
    with transaction.atomic():
        _lock_agents({agent_id for _, agent_id in due})
        works = list(
            AgentWork.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(id__in=[w for w, _ in due], state=AgentWorkState.PUSHED, expires_at__lte=now)
            .select_related("agent__presence_config")
            .order_by("id")
        )
        for work in works:
            _end_work(work, AgentWorkState.TIMED_OUT, now=now)
            _return_item(work.item_id)
            after = work.agent.presence_config.status_after_timeout_id
            if after:
                _apply_status(work.agent_id, after, now=now)
            count += 1
        if count:
            request_routing()
    return count


def expire_lost_consoles(*, now: datetime | None = None) -> int:
    """Set offline the agents whose console has been gone longer than the grace period."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.CONSOLE_GRACE_SECONDS)
    lost = list(
        Agent.objects.filter(status__is_online=True, presence_config__console_required=True)
        .filter(Q(console_seen_at__lt=cutoff) | Q(console_seen_at__isnull=True))
        .values_list("id", flat=True)
    )
    for agent_id in lost:
        with transaction.atomic():
            _lock_agents([agent_id])
            # Re-checked under the lock: a heartbeat may have come in meanwhile.
            still_lost = Agent.objects.filter(
                Q(console_seen_at__lt=cutoff) | Q(console_seen_at__isnull=True),
                id=agent_id,
                status__is_online=True,
            ).exists()
            if still_lost:
                _apply_status(agent_id, None, now=now)
    return len(lost)


def reconcile_capacity() -> int:
    """Check each agent's used capacity and open count against their live work; fix drift.

    Used capacity is never trusted blindly: a crash between writes cannot happen inside one
    transaction, but a hand edit or a bug could, and routing must not stall on a phantom load.
    """
    live = {
        row["agent_id"]: (row["units"] or 0, row["n"])
        for row in AgentWork.objects.filter(state__in=LIVE_STATES)
        .values("agent_id")
        .annotate(units=Sum("units"), n=models.Count("id"))
    }
    suspects = [
        a["id"]
        for a in Agent.objects.filter(Q(used_capacity__gt=0) | Q(id__in=list(live))).values(
            "id", "used_capacity", "open_count"
        )
        if (a["used_capacity"], a["open_count"]) != live.get(a["id"], (0, 0))
    ]
    fixed = 0
    for agent_id in suspects:
        with transaction.atomic():
            _lock_agents([agent_id])
            agg = AgentWork.objects.filter(agent_id=agent_id, state__in=LIVE_STATES).aggregate(
                units=Sum("units"), n=models.Count("id")
            )
            units, count = agg["units"] or 0, agg["n"]
            agent = Agent.objects.get(pk=agent_id)
            if (agent.used_capacity, agent.open_count) != (units, count):
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
                    capacity=Greatest(F("configured_capacity"), Value(units)),
                )
                fixed += 1
    if fixed:
        request_routing()
    return fixed


# --- Configuration -----------------------------------------------------------------------------
# Admin edits of channels, queues, routing configurations and presence statuses. Plain records are
# validated and saved; edits that change how live work routes also bring that work in line.

_LIVE_ITEM_STATES = (WorkItemStatus.WAITING, WorkItemStatus.OFFERED, WorkItemStatus.ASSIGNED)

_Config = TypeVar("_Config", bound=models.Model)


def save_configuration(
    *,
    instance: _Config,
    changes: Mapping[str, Any],
    m2m: Mapping[str, Iterable[Any]] | None = None,
) -> _Config:
    """Create or edit a configuration record that has no effect on live work by itself: a service
    channel, a new routing configuration, queue or presence status, a decline reason.

    Fields are checked as a form checks them (model validators, unique fields, constraints); a
    refusal raises ``RoutingError`` and writes nothing.
    """
    with transaction.atomic():
        for name, value in changes.items():
            setattr(instance, name, value)
        try:
            instance.full_clean()
        except ValidationError as exc:
            raise RoutingError(" ".join(exc.messages), "invalid") from None
        instance.save()
        for name, values in (m2m or {}).items():
            getattr(instance, name).set(list(values))
    return instance


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
    supervisors: Iterable[AbstractBaseUser] | None = None,
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
                WorkItem.objects.filter(queue_id=queue_id, status__in=_LIVE_ITEM_STATES)
                .exclude(routing_priority=routing_priority)
                .update(routing_priority=routing_priority)
            )
            if count:
                _queue_changed(queue_id)
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
        locked = _lock_agents(
            Agent.objects.filter(status_id=status_id).values_list("id", flat=True)
        )
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
            _end_work(
                work,
                AgentWorkState.CANCELED,
                now=now,
                note="Returned to queue: agent no longer available for this channel.",
            )
            _return_item(work.item_id)
        request_routing()
    return len(stranded)


def delete_configuration(*, instance: models.Model) -> None:
    """Delete a configuration record nothing depends on.

    A record in use (a queue or channel with work items, a routing configuration with queues, a
    presence configuration with agents, a status agents are in) is refused with ``Conflict``
    saying what uses it. Uses are counted first, so a queue with a long history is not loaded
    into memory just to be refused.
    """
    uses = _uses_of(instance)
    if uses:
        raise Conflict(
            _("%(record)s cannot be deleted: it is used by %(uses)s.")
            % {"record": instance, "uses": ", ".join(uses)},
            "in_use",
        )
    try:
        with transaction.atomic():
            instance.delete()
    except (ProtectedError, RestrictedError) as exc:
        # Something began using it between the count and the delete.
        raise Conflict(
            _("%(record)s cannot be deleted: it is in use.") % {"record": instance}, "in_use"
        ) from exc


def _uses_of(instance: models.Model) -> list[str]:
    uses = []
    for rel in instance._meta.get_fields(include_hidden=True):
        if not (rel.auto_created and not rel.concrete and (rel.one_to_many or rel.one_to_one)):
            continue
        if rel.on_delete not in (models.PROTECT, models.RESTRICT):
            continue
        count = rel.related_model._base_manager.filter(**{rel.field.name: instance}).count()
        if count:
            meta = rel.related_model._meta
            uses.append(f"{count} {meta.verbose_name if count == 1 else meta.verbose_name_plural}")
    if isinstance(instance, PresenceStatus):
        # Agents' status is SET_NULL; deleting it under them would take them offline silently,
        # with their offers still held.
        count = Agent.objects.filter(status=instance).count()
        if count:
            uses.append(
                ngettext("%(count)d agent in this status", "%(count)d agents in this status", count)
                % {"count": count}
            )
    return uses


# --- Internals -------------------------------------------------------------------------------


def _size_from(config: Any, channel: ServiceChannel) -> tuple[int | None, int | None]:
    if config.size_units:
        return config.size_units, None
    if config.size_percent:
        return None, config.size_percent
    return channel.default_size_units, None


def _lock_agents(agent_ids: Iterable[int]) -> list[int]:
    """Lock agent rows in id order (the one order every writer uses: no deadlocks)."""
    ids = sorted(set(agent_ids))
    if not ids:
        return []
    return list(
        Agent.objects.select_for_update()
        .filter(id__in=ids)
        .order_by("id")
        .values_list("id", flat=True)
    )


class _LiveWorkMoved(Exception):
    """An item's live agent work changed while its locks were being taken."""


def _lock_item_and_live_work(item_id: int) -> tuple[WorkItem, AgentWork | None]:
    """Lock an item and its live agent work, if any, in the one lock order: agent, agent work,
    item. (Locking the item before the agent work let a cancel and an accept - which holds the
    agent work and then updates the item - wait on each other.)

    Which agent to lock is known only from an unlocked read; if the live work is not the same
    once the locks are held (an offer was made or ended in between), ``_LiveWorkMoved`` rolls
    the caller's transaction back before it wrote anything.
    """
    seen = _live_work_of(item_id)
    if seen is not None:
        _lock_agents([seen.agent_id])
    live = (
        AgentWork.objects.select_for_update(of=("self",))
        .filter(item_id=item_id, state__in=LIVE_STATES)
        .first()
    )
    item = _lock_item(item_id)
    # Once the item is locked no offer can be made for it (a pass skips locked items, a
    # supervisor's push waits for the item), so this check holds until commit.
    now_live = _live_work_of(item_id)
    ids = {getattr(w, "pk", None) for w in (seen, live, now_live)}
    if len(ids) != 1:
        raise _LiveWorkMoved
    return item, live


def _retry_if_live_work_moved(action: Any, item_id: int, attempts: int = 3) -> Any:
    for _attempt in range(attempts):
        try:
            return action()
        except _LiveWorkMoved:
            continue
    raise Conflict(
        _("Item %(id)s kept changing while this ran; try again.") % {"id": item_id}, "busy"
    )


def _lock_item(item_id: int) -> WorkItem:
    try:
        return (
            WorkItem.objects.select_for_update(of=("self",)).select_related("queue").get(pk=item_id)
        )
    except WorkItem.DoesNotExist:
        raise NotFound(_("No work item %(id)s.") % {"id": item_id}, "not_found") from None


def _live_work_of(item_id: int) -> AgentWork | None:
    return AgentWork.objects.filter(item_id=item_id, state__in=LIVE_STATES).first()


def _get_own_work(work_id: int, agent: Agent) -> AgentWork:
    work = AgentWork.objects.filter(pk=work_id).select_related("item", "queue", "channel").first()
    if work is None or work.agent_id != agent.pk:
        # Someone else's work is reported as missing: its existence is not the caller's business.
        raise NotFound(_("No work %(id)s of yours.") % {"id": work_id}, "not_found")
    return work


def _lock_own_work(work_id: int, agent: Agent) -> AgentWork:
    work = (
        AgentWork.objects.select_for_update(of=("self",))
        .select_related("item", "queue", "channel")
        .filter(pk=work_id)
        .first()
    )
    if work is None or work.agent_id != agent.pk:
        raise NotFound(_("No work %(id)s of yours.") % {"id": work_id}, "not_found")
    return work


def _lock_own_work_in_state(work_id: int, agent: Agent, state: str, refusal: str) -> AgentWork:
    """Lock the agent, then their work, and check it is in ``state``; else ``Conflict`` with
    ``refusal`` (a translated message with a ``%(state)s`` placeholder)."""
    _lock_agents([agent.pk])
    work = _lock_own_work(work_id, agent)
    if work.state != state:
        raise Conflict(refusal % {"state": work.get_state_display()}, work.state)
    return work


def _end_work(
    work: AgentWork, state: str, *, now: datetime, reason: str = "", note: str = ""
) -> None:
    """End a live agent work and free the agent's capacity (agent row already locked)."""
    was = work.state
    AgentWork.objects.filter(pk=work.pk).update(
        state=state, ended_at=now, decline_reason=reason, end_note=note
    )
    work.state, work.ended_at, work.decline_reason, work.end_note = state, now, reason, note
    if was in LIVE_STATES:
        Agent.objects.filter(pk=work.agent_id).update(
            used_capacity=F("used_capacity") - work.units,
            open_count=F("open_count") - 1,
            capacity=Greatest(F("configured_capacity"), F("used_capacity") - work.units),
        )
        realtime.publish(*_presence_message(work.agent_id))
    _work_changed(work)


def _return_item(item_id: int) -> None:
    """Put an item back in line: it keeps its place (its original time in queue)."""
    WorkItem.objects.filter(
        id=item_id, status__in=[WorkItemStatus.OFFERED, WorkItemStatus.ASSIGNED]
    ).update(status=WorkItemStatus.WAITING)
    queue_id = WorkItem.objects.filter(id=item_id).values_list("queue_id", flat=True).first()
    if queue_id:
        _queue_changed(queue_id)


def _requeue(item_id: int, queue: Queue, *, now: datetime, keep_age: bool = False) -> None:
    config = queue.routing_config
    item = WorkItem.objects.select_related("channel").get(pk=item_id)
    size_units, size_percent = _size_from(config, item.channel)
    item.queue = queue
    item.status = WorkItemStatus.WAITING
    item.routing_priority = config.routing_priority
    item.size_units, item.size_percent = size_units, size_percent
    if not keep_age:
        item.enqueued_at = now
    item.save(
        update_fields=[
            "queue",
            "status",
            "routing_priority",
            "size_units",
            "size_percent",
            "enqueued_at",
        ]
    )
    _queue_changed(queue.pk)


def _apply_status(agent_id: int, status_id: int | None, *, now: datetime) -> None:
    """Set the status (agent row locked) and return offers the new status no longer covers."""
    Agent.objects.filter(pk=agent_id).update(status_id=status_id, status_changed_at=now)
    status = PresenceStatus.objects.filter(pk=status_id).first() if status_id else None
    keep_channels: set[int] = set()
    if status is not None and status.is_online:
        keep_channels = set(status.channels.values_list("id", flat=True))
    stranded = list(
        AgentWork.objects.select_for_update(of=("self",))
        .filter(agent_id=agent_id, state=AgentWorkState.PUSHED)
        .exclude(channel_id__in=keep_channels)
        .order_by("id")
    )
    for work in stranded:
        _end_work(
            work,
            AgentWorkState.CANCELED,
            now=now,
            note="Returned to queue: agent no longer available for this channel.",
        )
        _return_item(work.item_id)
    realtime.publish(*_presence_message(agent_id))
    # Supervisors listen to queue groups, not to each agent: a status change shows on the
    # dashboards of every queue the agent serves (they coalesce these into one refresh).
    for queue_id in QueueMembership.objects.filter(agent_id=agent_id).values_list(
        "queue_id", flat=True
    ):
        _queue_changed(queue_id)
    if stranded or (status is not None and status.is_online):
        request_routing()


def _presence_message(agent_id: int) -> tuple[str, str, dict[str, Any]]:
    return _presence_messages([agent_id])[0]


def _presence_messages(agent_ids: list[int]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (realtime.agent_group(agent_id), realtime.PRESENCE_CHANGED, payload)
        for agent_id, payload in presence_payloads(agent_ids).items()
    ]


def _work_changed(work: AgentWork) -> None:
    realtime.publish(realtime.agent_group(work.agent_id), realtime.WORK_CHANGED, work_payload(work))
    _queue_changed(work.queue_id)


def _queue_changed(queue_id: int) -> None:
    realtime.publish(realtime.queue_group(queue_id), realtime.QUEUE_CHANGED, {"queue_id": queue_id})
