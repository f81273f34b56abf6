"""Writing a batch's offers: agent work rows, items offered or assigned, agents' load raised, and
the pushes to consoles after commit. PostgreSQL writes from arrays in a few statements; SQLite
(the embedded run) uses the ORM for the same writes.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import (
    Case,
    DecimalField,
    F,
    Value,
    When,
)

from omnirouter import realtime
from presence.models import Agent
from routing import engine
from routing.models import (
    LIVE_STATES,
    AgentWork,
    AgentWorkState,
    ServiceChannel,
    WorkItem,
    WorkItemStatus,
)
from routing.selectors import PRESENCE_FIELDS, presence_payload, skill_need_payload
from routing.services import records
from routing.services.transitions import exact_units

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockedAgents:
    agents: dict[int, engine.AgentView]
    auto_accept: set[int]
    # id -> the values of selectors.PRESENCE_FIELDS as locked (for the presence events)
    presence: dict[int, tuple[Any, ...]]


@dataclass(frozen=True)
class QueueConfig:
    routing_model: str
    push_timeout_seconds: int
    queue_name: str


@dataclass
class NewWork:
    """An agent work row about to be written for one offer."""

    offer: engine.Offer
    row: Any  # the claimed page's row
    state: str
    expires_at: datetime | None
    opened_at: datetime | None
    auto: bool
    pk: int | None = None


def write_offers(
    offers: list[engine.Offer],
    rows: dict[int, Any],
    configs: dict[int, QueueConfig],
    locked: LockedAgents,
    now: datetime,
    needs: Mapping[int, tuple[engine.Requirement, ...]] | None = None,
) -> None:
    """Write the batch's offers and tell the consoles; ``needs``: the requirements the pass read
    for the page's items, so an offer shows what it needs (as ``selectors.work_payload``)."""
    needs = needs or {}
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
            NewWork(
                offer=offer,
                row=row,
                state=AgentWorkState.OPENED if is_auto else AgentWorkState.PUSHED,
                expires_at=None if is_auto else deadlines[row.queue_id],
                opened_at=now if is_auto else None,
                auto=is_auto,
            )
        )
    item_payloads = _write_works_and_items(works, configs, now)
    # Auto-accepted items are held at once: their records change in this batch's transaction.
    records.item_changed(
        records.ACCEPTED,
        (
            (w.offer.item_id, w.row.record_type_id, w.row.record_id, w.offer.agent_id)
            for w in works
            if w.auto
        ),
        now=now,
    )

    units: dict[int, engine.Units] = defaultdict(int)
    counts: dict[int, int] = defaultdict(int)
    for offer in offers:
        units[offer.agent_id] += offer.units
        counts[offer.agent_id] += 1
    _raise_load(units, counts, now)

    channels = {c[0]: c[1:] for c in ServiceChannel.objects.values_list("id", "key", "label")}
    pushed_at = now.isoformat()
    iso: dict[datetime | None, str | None] = {d: d.isoformat() for d in deadlines.values()}
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
            "units": engine.as_number(work.offer.units),
            "pushed_at": pushed_at,
            "expires_at": iso[work.expires_at],
            "opened_at": iso[work.opened_at],
            "ended_at": None,
            "enqueued_at": row.enqueued_at.isoformat(),
            "why": work.offer.reason.get("text", ""),
            "payload": item_payloads.get(work.offer.item_id) or {},
            "priority": row.priority,
        }
        if row.transfer_from or row.transfer_note:
            payload["transfer"] = {"from": row.transfer_from, "note": row.transfer_note}
        item_needs = needs.get(work.offer.item_id)
        if item_needs:
            # The engine keeps levels in hundredths.
            payload["skills"] = [
                skill_need_payload(
                    r.skill_id, r.name, Decimal(r.min_level).scaleb(-2), r.additional
                )
                for r in item_needs
            ]
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
    works: list[NewWork], configs: dict[int, QueueConfig], now: datetime
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
    # unique index still refuses a second live offer for an item. Rows are inserted in offer
    # order (``ORDER BY v.ord``), so ids within a batch follow the engine's order: a join
    # alone may produce them in any order.
    with connection.cursor() as cur:
        cur.execute(
            "WITH v AS (SELECT * FROM unnest(%(items)s::bigint[], %(agents)s::bigint[],"
            " %(units)s::numeric[], %(timeouts)s::int[], %(auto)s::bool[], %(reasons)s::text[])"
            " WITH ORDINALITY AS v(item_id, agent_id, units, timeout, auto, reason, ord)),"
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
            " FROM v JOIN taken t ON t.id = v.item_id ORDER BY v.ord RETURNING item_id, id)"
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


def _mark_items_taken(works: list[NewWork]) -> dict[int, Any]:
    """SQLite: set the items offered or assigned; return their payloads."""
    offered = [w.offer.item_id for w in works if not w.auto]
    assigned = [w.offer.item_id for w in works if w.auto]
    if offered:
        WorkItem.objects.filter(id__in=offered).update(status=WorkItemStatus.OFFERED)
    if assigned:
        WorkItem.objects.filter(id__in=assigned).update(status=WorkItemStatus.ASSIGNED)
    return dict(WorkItem.objects.filter(id__in=offered + assigned).values_list("id", "payload"))


def _insert_works(works: list[NewWork], now: datetime) -> None:
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


def _raise_load(units: dict[int, engine.Units], counts: dict[int, int], now: datetime) -> None:
    """Add offered units and items to the agents' load (rows already locked by the batch)."""
    agent_ids = sorted(units)
    if connection.vendor != "postgresql":
        added = Case(
            *(When(id=a, then=Value(Decimal(u))) for a, u in units.items()),
            default=Value(Decimal(0)),
            output_field=DecimalField(max_digits=7, decimal_places=2),
        )
        Agent.objects.filter(id__in=agent_ids).update(
            used_capacity=exact_units(F("used_capacity") + added),
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
            " FROM unnest(%s::bigint[], %s::numeric[], %s::int[]) AS v(id, units, n)"
            " WHERE a.id = v.id",
            [now, agent_ids, [units[a] for a in agent_ids], [counts[a] for a in agent_ids]],
        )
