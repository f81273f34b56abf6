"""Pure matching: given waiting items and agents with room, decide which offers to make.

No Django, no I/O, ``now`` is an argument and every tie breaks deterministically, so the routing
rules can be tested from tables of cases and the decision for any item can be explained.

Rules (see docs/architecture.md):
1. Items go in order of routing priority, then item priority, then time entered queue, then id.
2. An agent is a candidate for an item when they are a member of its queue, available for its
   channel, have spare capacity for its size, and have not refused it (declined or timed out).
   An agent who refused it becomes a candidate again after the re-offer cooldown, but only when no
   one who has not refused it can take it.
3. The queue's routing model picks among candidates; ties go to the agent idle longest since their
   last assignment (never assigned counts as longest), then to the lowest agent id.
4. A preferred agent (sticky routing) gets the item while the preference lasts; the item waits for
   them rather than going to someone else.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

LEAST_ACTIVE = "least_active"
MOST_AVAILABLE = "most_available"

_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ItemView:
    id: int
    queue_id: int
    channel_id: int
    routing_priority: int
    priority: int
    enqueued_at: datetime
    routing_model: str
    size_units: int | None = None
    size_percent: int | None = None
    # agent id -> when that agent last declined the item or let its offer time out
    refused_by: Mapping[int, datetime] = field(default_factory=dict)
    preferred_agent_id: int | None = None
    preferred_until: datetime | None = None

    @property
    def order_key(self) -> tuple[int, int, datetime, int]:
        return (self.routing_priority, self.priority, self.enqueued_at, self.id)

    def units_for(self, capacity: int) -> int:
        if self.size_units is not None:
            return self.size_units
        percent = self.size_percent if self.size_percent is not None else 100
        return max(1, -(-capacity * percent // 100))


@dataclass(frozen=True)
class AgentView:
    id: int
    capacity: int
    used: int
    open_count: int
    last_assigned_at: datetime | None
    channel_ids: frozenset[int]
    queue_ids: frozenset[int]


@dataclass(frozen=True)
class Offer:
    item_id: int
    agent_id: int
    units: int
    reason: dict[str, Any]


@dataclass
class _AgentState:
    view: AgentView
    used: int
    open_count: int
    last_assigned_at: datetime | None
    # Order of assignment within this pass: all of them happen at ``now``, and the agent served
    # earlier in the pass has been idle longer than the one served later.
    pass_seq: int = 0

    @property
    def spare(self) -> int:
        return self.view.capacity - self.used

    def idle_key(self) -> tuple[datetime, int]:
        return (self.last_assigned_at or _NEVER, self.pass_seq)


def _model_key(state: _AgentState, model: str) -> tuple[Any, ...]:
    if model == MOST_AVAILABLE:
        return (-state.spare, state.idle_key(), state.view.id)
    return (state.open_count, state.idle_key(), state.view.id)


def match(
    items: Iterable[ItemView],
    agents: Iterable[AgentView],
    *,
    now: datetime,
    reoffer_cooldown: timedelta,
) -> list[Offer]:
    """Return the offers for ``items`` (any order) given ``agents`` with their current load."""
    states = {a.id: _AgentState(a, a.used, a.open_count, a.last_assigned_at) for a in agents}
    by_queue: dict[int, list[_AgentState]] = defaultdict(list)
    for state in sorted(states.values(), key=lambda s: s.view.id):
        for queue_id in state.view.queue_ids:
            by_queue[queue_id].append(state)

    offers: list[Offer] = []
    for item in sorted(items, key=lambda i: i.order_key):
        members = by_queue.get(item.queue_id)
        if not members:
            continue
        offer = _match_one(item, members, now=now, cooldown=reoffer_cooldown)
        if offer is None:
            continue
        chosen = states[offer.agent_id]
        chosen.used += offer.units
        chosen.open_count += 1
        chosen.last_assigned_at = now
        chosen.pass_seq = len(offers) + 1
        offers.append(offer)
        if chosen.spare <= 0:
            for queue_id in chosen.view.queue_ids:
                by_queue[queue_id].remove(chosen)
    return offers


def _match_one(
    item: ItemView, members: list[_AgentState], *, now: datetime, cooldown: timedelta
) -> Offer | None:
    fresh: list[_AgentState] = []
    cooled: list[_AgentState] = []
    refused_waiting = 0
    for state in members:
        if item.channel_id not in state.view.channel_ids:
            continue
        if state.spare < item.units_for(state.view.capacity):
            continue
        refused_at = item.refused_by.get(state.view.id)
        if refused_at is None:
            fresh.append(state)
        elif now - refused_at >= cooldown:
            cooled.append(state)
        else:
            refused_waiting += 1

    sticky = (
        item.preferred_agent_id is not None
        and item.preferred_until is not None
        and now < item.preferred_until
    )
    if sticky:
        preferred = [s for s in fresh + cooled if s.view.id == item.preferred_agent_id]
        if not preferred:
            return None  # hold the item for its preferred agent until the preference lapses
        state = preferred[0]
        return _offer(
            item,
            state,
            reason={
                "rule": "preferred_agent",
                "text": "Preferred agent (returning customer) is available.",
            },
        )

    reoffer = not fresh
    pool = fresh or cooled
    if not pool:
        return None
    model = item.routing_model
    ranked = sorted(pool, key=lambda s: _model_key(s, model))
    best = ranked[0]
    tie_break = None
    if len(ranked) > 1:
        first, second = _model_key(best, model), _model_key(ranked[1], model)
        if first[0] == second[0]:
            tie_break = "longest_idle" if first[1] != second[1] else "lowest_agent_id"
    return _offer(
        item,
        best,
        reason=_explain(
            best,
            model,
            len(pool),
            tie_break,
            reoffer,
            skipped_refusals=refused_waiting + len(cooled) * (not reoffer),
        ),
    )


def _offer(item: ItemView, state: _AgentState, *, reason: dict[str, Any]) -> Offer:
    units = item.units_for(state.view.capacity)
    reason = {
        **reason,
        "open_items_before": state.open_count,
        "spare_before": state.spare,
        "capacity": state.view.capacity,
        "idle_since": state.last_assigned_at.isoformat() if state.last_assigned_at else None,
    }
    return Offer(item_id=item.id, agent_id=state.view.id, units=units, reason=reason)


def _explain(
    state: _AgentState,
    model: str,
    candidates: int,
    tie_break: str | None,
    reoffer: bool,
    skipped_refusals: int,
) -> dict[str, Any]:
    if model == MOST_AVAILABLE:
        text = f"Most available: {state.spare} spare units"
    else:
        text = f"Least active: {state.open_count} open items"
    text += f", best of {candidates} eligible agent{'s' if candidates != 1 else ''}"
    if tie_break == "longest_idle":
        text += "; tie broken by longest time since last assignment"
    elif tie_break == "lowest_agent_id":
        text += "; tie broken by agent id"
    if reoffer:
        text += "; re-offered after cooldown: no one else could take it"
    elif skipped_refusals:
        text += f"; skipped {skipped_refusals} agent(s) who refused it before"
    return {
        "rule": "routing_model",
        "model": model,
        "candidates": candidates,
        "tie_break": tie_break,
        "reoffer_after_cooldown": reoffer,
        "text": text + ".",
    }
