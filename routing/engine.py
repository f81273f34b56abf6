"""Pure matching: given waiting items and agents with room, decide which offers to make.

No Django, no I/O, ``now`` is an argument and every tie breaks deterministically, so the routing
rules can be tested from tables of cases and the decision for any item can be explained.

Rules (see docs/architecture.md):
1. Items go in order of routing priority, then item priority, then secondary priority, then
   time entered queue, then id.
2. An agent is a candidate for an item when they are online, a member of its queue, available
   for its channel, have a live console (or need none), have spare capacity for its size
   (``size_for``), and have not refused it (declined or timed out). An agent who refused it
   becomes a candidate again after the re-offer cooldown, but only when no one who has not
   refused it can take it. An agent must also have every skill the item requires at its minimum
   level (``Requirement``); an additional requirement stops counting once it drops
   (``drops_at``: relaxation, so a waiting item widens to more agents). ``eligibility`` and
   ``explain`` give that rule, with the reason for each agent left out; ``match`` decides by the
   same checks. An agent whose configuration limits offers at once (``max_offers``) is not
   offered more while they hold that many unanswered (pacing); accepted work does not count.
3. The queue's routing model picks among candidates (``least_active``: fewest open items;
   ``most_available``: most spare units; ``best_skilled``: the highest score, where an agent's
   score for an item is the sum of their levels in the skills the item requires at ``now``,
   additional ones that have dropped left out, so an item without requirements scores 0 for
   everyone; levels and scores are in hundredths); ties go to the agent idle longest since their
   last assignment (never assigned counts as longest), then to the lowest agent id.
4. A preferred agent (sticky routing) gets the item while the preference lasts; the item waits for
   them rather than going to someone else.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum
from typing import Any, Protocol

LEAST_ACTIVE = "least_active"
MOST_AVAILABLE = "most_available"
BEST_SKILLED = "best_skilled"

_NEVER = datetime.min.replace(tzinfo=UTC)

# Capacity is counted in units, exact to a hundredth: fixed sizes are whole units (ints), a
# percentage of an agent's capacity is a Decimal with two places (the database stores load as
# numeric(7, 2), so its CHECK "used <= capacity" holds exactly: 50 % of 3 is 1.5, two fit).
Units = Decimal | int
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Requirement:
    """A skill an item needs: the agent's level must be at least ``min_level`` (hundredths:
    7.5 is 750). An additional requirement counts until ``drops_at`` (its wait in the queue),
    a required one always."""

    skill_id: int
    min_level: int = 0
    additional: bool = False
    drops_at: datetime | None = None
    name: str = ""  # for the words of a decision; the rule reads only the id

    def in_force(self, now: datetime) -> bool:
        return not (self.additional and self.drops_at is not None and now >= self.drops_at)


def in_force(requirements: Iterable[Requirement], now: datetime) -> tuple[Requirement, ...]:
    """The requirements that count at ``now``."""
    return tuple(r for r in requirements if r.in_force(now))


@dataclass(frozen=True)
class ItemView:
    id: int
    queue_id: int
    channel_id: int
    routing_priority: int
    priority: int
    enqueued_at: datetime
    routing_model: str
    secondary_priority: int = 5
    size_units: int | None = None
    size_percent: int | None = None
    # agent id -> when that agent last declined the item or let its offer time out
    refused_by: Mapping[int, datetime] = field(default_factory=dict)
    preferred_agent_id: int | None = None
    preferred_until: datetime | None = None
    requirements: tuple[Requirement, ...] = ()

    @property
    def order_key(self) -> tuple[int, int, int, datetime, int]:
        return (
            self.routing_priority,
            self.priority,
            self.secondary_priority,
            self.enqueued_at,
            self.id,
        )


class Sized(Protocol):
    @property
    def size_units(self) -> int | None: ...
    @property
    def size_percent(self) -> int | None: ...


def size_for(item: Sized, capacity: Units) -> Units:
    """Capacity units ``item`` takes from an agent of ``capacity``: its fixed size, else its
    percentage of that capacity, exact to a hundredth of a unit (rounded up only past that, as
    for a capacity in force that is not whole; at least 0.01; no size: all of it)."""
    if item.size_units is not None:
        return item.size_units
    percent = item.size_percent if item.size_percent is not None else 100
    share = (Decimal(capacity) * percent / 100).quantize(_CENT, rounding=ROUND_CEILING)
    return max(_CENT, share)


def whole_or_exact(units: Units) -> Units:
    """Whole units as an int (the common case: int arithmetic in the engine is the fast one),
    else the exact Decimal. Readers of the database's numeric load build views with it."""
    whole = int(units)
    return whole if whole == units else units


def as_number(units: Units) -> int | float:
    """Units for JSON and display: a whole number as an int, else the hundredths as a float."""
    whole = int(units)
    return whole if whole == units else float(units)


@dataclass(frozen=True)
class AgentView:
    id: int
    capacity: Units
    used: Units
    open_count: int
    last_assigned_at: datetime | None
    channel_ids: frozenset[int]
    queue_ids: frozenset[int]
    # The routing pass reads only agents who are online with a live console (its SQL
    # prefilter), hence the defaults; other readers (``routing.selectors.agent_views``) say.
    online: bool = True
    console_live: bool = True
    # skill id -> level in hundredths (7.5 is 750)
    skills: Mapping[int, int] = field(default_factory=dict)
    # Pacing: offers the agent holds unanswered (pushed), and the most they may (None: no
    # limit; always None for auto-accept agents, whose offers are opened at once).
    pending_offers: int = 0
    max_offers: int | None = None

    @property
    def spare(self) -> Units:
        return self.capacity - self.used


def _paced(agent: AgentView, pending: int) -> bool:
    """Holding as many unanswered offers as the agent's configuration allows."""
    return agent.max_offers is not None and pending >= agent.max_offers


class Reason(StrEnum):
    """Why an agent may not take an item, most fundamental first."""

    NOT_MEMBER = "not_member"  # not a member of the item's queue
    SKILL = "skill"  # lacks a skill the item requires now, or has it below the minimum level
    OFFLINE = "offline"  # presence status offline (or none)
    NO_CONSOLE = "no_console"  # console required and not seen within the grace period
    CHANNEL = "channel"  # online, but the status does not cover the item's channel
    CAPACITY = "capacity"  # spare capacity below the item's size
    PACING = "pacing"  # holds ``offers`` unanswered offers, the most their configuration allows
    REFUSED = "refused"  # declined it or let it time out; cooling down ``until``
    REFUSED_OTHERS_FIRST = "refused_others_first"  # cooled down, but others who did not refuse can
    PREFERRED_AGENT = "preferred_agent"  # held for its preferred agent ``until``


# What stops an agent whatever the routing state of the item (a supervisor's push obeys these:
# a push is an offer, so pacing too); the others are the router's choices among those who could.
# Skills are hard: a push to an agent without a skill the item requires now is refused (a
# supervisor who means it drops the requirement first), so "needs Japanese" holds whoever routes
# the item.
HARD_REASONS = frozenset(
    {
        Reason.NOT_MEMBER,
        Reason.SKILL,
        Reason.OFFLINE,
        Reason.CHANNEL,
        Reason.NO_CONSOLE,
        Reason.CAPACITY,
        Reason.PACING,
    }
)


@dataclass(frozen=True)
class Ineligible:
    reason: Reason
    until: datetime | None = None  # REFUSED: cooldown ends; PREFERRED_AGENT: preference lapses
    spare: Units | None = None  # CAPACITY: the agent's spare units ...
    needed: Units | None = None  # ... and the item's size for them
    skill: Requirement | None = None  # SKILL: the first requirement in force they fall short of,
    level: int | None = None  # ... their level in it (hundredths; None: they lack it)
    offers: int | None = None  # PACING: the unanswered offers they hold (their limit)

    @property
    def hard(self) -> bool:
        return self.reason in HARD_REASONS


def _hard_reason(
    item: ItemView,
    agent: AgentView,
    spare: Units,
    needs: tuple[Requirement, ...],
    pending: int | None = None,
) -> Reason | None:
    """The checks of rule 2 that depend on the agent alone (``spare``: their room now;
    ``needs``: the item's requirements in force; ``pending``: the unanswered offers they hold
    now, by default the view's)."""
    if item.queue_id not in agent.queue_ids:
        return Reason.NOT_MEMBER
    if needs and _short_of(needs, agent.skills) is not None:
        return Reason.SKILL
    if not _can_work(agent):
        return Reason.OFFLINE if not agent.online else Reason.NO_CONSOLE
    fits = _fits(item, agent, spare, size_for(item, agent.capacity))
    if fits is None and _paced(agent, agent.pending_offers if pending is None else pending):
        return Reason.PACING
    return fits


def _short_of(needs: tuple[Requirement, ...], skills: Mapping[int, int]) -> Requirement | None:
    """The first requirement the agent's ``skills`` do not meet, or ``None``."""
    for need in needs:
        level = skills.get(need.skill_id)
        if level is None or level < need.min_level:
            return need
    return None


def score(needs: Iterable[Requirement], skills: Mapping[int, int]) -> int:
    """``best_skilled``'s score (hundredths): the agent's levels summed over ``needs``."""
    return sum(skills.get(need.skill_id, 0) for need in needs)


def _can_work(agent: AgentView) -> bool:
    """Online with a live console: ``match`` leaves everyone else out before it starts."""
    return agent.online and agent.console_live


def _fits(item: ItemView, agent: AgentView, spare: Units, units: Units) -> Reason | None:
    """The per-item part of ``_hard_reason`` (``units``: the item's ``size_for`` the agent),
    which ``match`` checks for each member it scans."""
    if item.channel_id not in agent.channel_ids:
        return Reason.CHANNEL
    if spare < units:
        return Reason.CAPACITY
    return None


def _held_for(item: ItemView, now: datetime) -> int | None:
    """The preferred agent the item waits for, while the preference lasts."""
    until = item.preferred_until
    if item.preferred_agent_id is not None and until is not None and now < until:
        return item.preferred_agent_id
    return None


def _cooling(refused_at: datetime, now: datetime, cooldown: timedelta) -> bool:
    return now - refused_at < cooldown


def has_room(agent: AgentView) -> bool:
    """Room for more: some spare capacity, a channel, not paced (the supervisor's view of an
    agent across their queues; an item's own size is checked by ``eligibility``)."""
    return (
        agent.online
        and bool(agent.channel_ids)
        and agent.console_live
        and agent.spare > 0
        and not _paced(agent, agent.pending_offers)
    )


def hard_ineligibility(item: ItemView, agent: AgentView, *, now: datetime) -> Ineligible | None:
    """What stops ``agent`` taking ``item`` at ``now`` whatever the router's choices
    (``HARD_REASONS``: what a supervisor's push obeys), or ``None``."""
    needs = in_force(item.requirements, now)
    hard = _hard_reason(item, agent, agent.spare, needs)
    if hard is Reason.SKILL:
        short = _short_of(needs, agent.skills)
        assert short is not None
        return Ineligible(hard, skill=short, level=agent.skills.get(short.skill_id))
    if hard is Reason.CAPACITY:
        return Ineligible(hard, spare=agent.spare, needed=size_for(item, agent.capacity))
    if hard is Reason.PACING:
        return Ineligible(hard, offers=agent.pending_offers)
    return None if hard is None else Ineligible(hard)


def eligibility(
    item: ItemView,
    agent: AgentView,
    *,
    now: datetime,
    reoffer_cooldown: timedelta,
    others_can_take: bool = False,
) -> Ineligible | None:
    """``None`` if ``agent`` may be offered ``item`` now, else why not.

    ``others_can_take``: whether someone who has not refused the item can take it (only decides
    for an agent who refused it and has cooled down; ``explain`` works it out for a set).
    """
    hard = hard_ineligibility(item, agent, now=now)
    if hard is not None:
        return hard
    refused_at = item.refused_by.get(agent.id)
    if refused_at is not None and _cooling(refused_at, now, reoffer_cooldown):
        return Ineligible(Reason.REFUSED, until=refused_at + reoffer_cooldown)
    held_for = _held_for(item, now)
    if held_for is not None:
        if held_for == agent.id:
            return None
        return Ineligible(Reason.PREFERRED_AGENT, until=item.preferred_until)
    if refused_at is not None and others_can_take:
        return Ineligible(Reason.REFUSED_OTHERS_FIRST)
    return None


def explain(
    item: ItemView, agents: Iterable[AgentView], *, now: datetime, reoffer_cooldown: timedelta
) -> dict[int, Ineligible | None]:
    """For each agent, ``None`` (eligible: ``match`` picks among these) or why not."""
    agents = list(agents)
    needs = in_force(item.requirements, now)
    others_can_take = any(
        a.id not in item.refused_by and _hard_reason(item, a, a.spare, needs) is None
        for a in agents
    )
    return {
        a.id: eligibility(
            item, a, now=now, reoffer_cooldown=reoffer_cooldown, others_can_take=others_can_take
        )
        for a in agents
    }


@dataclass(frozen=True)
class Offer:
    item_id: int
    agent_id: int
    units: Units
    reason: dict[str, Any]


class _AgentState:
    """An agent's load as the pass goes on; ``spare`` is kept in step with ``used``."""

    __slots__ = (
        "view",
        "used",
        "spare",
        "open_count",
        "last_assigned_at",
        "pass_seq",
        "version",
        "buckets",
        "pending",
    )

    def __init__(self, view: AgentView) -> None:
        self.view = view
        self.used = view.used
        self.spare = view.capacity - view.used
        self.open_count = view.open_count
        self.pending = view.pending_offers
        self.last_assigned_at = view.last_assigned_at
        # Order of assignment within this pass: all of them happen at ``now``, and the agent
        # served earlier in the pass has been idle longer than the one served later.
        self.pass_seq = 0
        # Bumped on every assignment: index entries made before it are stale.
        self.version = 0
        self.buckets: list[_Bucket] = []

    def idle_key(self) -> tuple[datetime, int]:
        return (self.last_assigned_at or _NEVER, self.pass_seq)

    def open_to_offers(self) -> bool:
        """Room and not paced: could be offered something (the index holds only these)."""
        return self.spare > 0 and not _paced(self.view, self.pending)


def _model_key(
    state: _AgentState, model: str, needs: tuple[Requirement, ...] = ()
) -> tuple[Any, ...]:
    """The routing model's order of agents for an item in force ``needs`` (lowest first)."""
    if model == MOST_AVAILABLE:
        return (-state.spare, state.idle_key(), state.view.id)
    if model == BEST_SKILLED:
        return (-score(needs, state.view.skills), state.idle_key(), state.view.id)
    return (state.open_count, state.idle_key(), state.view.id)


_Entry = tuple[tuple[Any, ...], int, _AgentState]


class _Bucket:
    """Members of one queue who share a set of channels, indexed for one routing model.

    Agents with room sit in one heap per spare capacity, each ordered by the routing model's key
    (unique: it ends with the agent id), so the best agent with room for an item is the best of
    a few heap tops instead of a scan and a sort of every member. An assignment bumps the agent's
    ``version`` and re-enters them under their new spare; the old entry is stale and is dropped
    when it reaches a top.
    """

    __slots__ = ("model", "channel_ids", "heaps", "counts")

    def __init__(self, model: str, channel_ids: frozenset[int], members: list[_AgentState]):
        self.model = model
        self.channel_ids = channel_ids
        self.heaps: dict[Units, list[_Entry]] = defaultdict(list)
        self.counts: dict[Units, int] = defaultdict(int)  # spare -> agents with exactly that spare
        for state in members:
            if state.open_to_offers():
                self.heaps[state.spare].append((_model_key(state, model), state.version, state))
                self.counts[state.spare] += 1
                state.buckets.append(self)
        for heap in self.heaps.values():
            heapq.heapify(heap)

    def moved(self, state: _AgentState, old_spare: Units, key: tuple[Any, ...]) -> None:
        """``state`` was just assigned work; ``key`` is its new key under this model."""
        self.counts[old_spare] -= 1
        if state.open_to_offers():
            self.counts[state.spare] += 1
            heapq.heappush(self.heaps[state.spare], (key, state.version, state))


def _purge(heap: list[_Entry]) -> bool:
    """Drop stale entries from the top; True if a valid entry remains."""
    while heap:
        top = heap[0]
        if top[1] == top[2].version:
            return True
        heapq.heappop(heap)
    return False


def _best_two(
    buckets: list[_Bucket], units: Units, want_second: bool
) -> tuple[_AgentState, _AgentState | None]:
    """The best and (if wanted) second-best agent with ``units`` spare in ``buckets``; the
    caller has counted that there is one (and a second, if wanted)."""
    tops = [
        heap
        for bucket in buckets
        for spare, heap in bucket.heaps.items()
        if spare >= units and _purge(heap)
    ]
    first_heap = min(tops, key=lambda h: h[0])
    best = first_heap[0]
    if not want_second:
        return best[2], None
    heapq.heappop(first_heap)
    runners = [h[0] for h in tops if h is not first_heap]
    if _purge(first_heap):
        runners.append(first_heap[0])
    heapq.heappush(first_heap, best)
    return best[2], min(runners)[2]


class _Index:
    """Buckets per (queue, routing model), built when the first item of that queue needs them."""

    def __init__(self, by_queue: dict[int, list[_AgentState]]) -> None:
        self.by_queue = by_queue
        self.buckets: dict[tuple[int, str], list[_Bucket]] = {}
        self.models: set[str] = set()
        # queue id -> skill id -> the queue's members with that skill (in id order)
        self.by_skill: dict[int, dict[int, list[_AgentState]]] = {}

    def with_skills(self, queue_id: int, needs: tuple[Requirement, ...]) -> list[_AgentState]:
        """Members of the queue who could meet ``needs``: those with its rarest skill (the
        caller checks every requirement of each). Skills narrow a queue far more than channels
        do, so an item with requirements scans a few members, not all of them."""
        by_skill = self.by_skill.get(queue_id)
        if by_skill is None:
            by_skill = self.by_skill[queue_id] = defaultdict(list)
            for state in self.by_queue.get(queue_id, ()):
                for skill_id in state.view.skills:
                    by_skill[skill_id].append(state)
        return min((by_skill.get(need.skill_id, []) for need in needs), key=len)

    def for_item(self, item: ItemView) -> list[_Bucket]:
        key = (item.queue_id, item.routing_model)
        buckets = self.buckets.get(key)
        if buckets is None:
            by_channels: dict[frozenset[int], list[_AgentState]] = defaultdict(list)
            for state in self.by_queue.get(item.queue_id, ()):
                by_channels[state.view.channel_ids].append(state)
            buckets = self.buckets[key] = [
                _Bucket(item.routing_model, channels, members)
                for channels, members in by_channels.items()
            ]
            self.models.add(item.routing_model)
        channel = item.channel_id
        return [b for b in buckets if channel in b.channel_ids]

    @staticmethod
    def moved(state: _AgentState, old_spare: Units) -> None:
        keys: dict[str, tuple[Any, ...]] = {}
        for bucket in state.buckets:
            key = keys.get(bucket.model)
            if key is None:
                key = keys[bucket.model] = _model_key(state, bucket.model)
            bucket.moved(state, old_spare, key)


def match(
    items: Iterable[ItemView],
    agents: Iterable[AgentView],
    *,
    now: datetime,
    reoffer_cooldown: timedelta,
) -> list[Offer]:
    """Return the offers for ``items`` (any order) given ``agents`` with their current load."""
    states = {a.id: _AgentState(a) for a in agents if _can_work(a)}
    by_queue: dict[int, list[_AgentState]] = defaultdict(list)
    for state in sorted(states.values(), key=lambda s: s.view.id):
        for queue_id in state.view.queue_ids:
            by_queue[queue_id].append(state)
    index = _Index(by_queue)

    offers: list[Offer] = []
    for item in sorted(items, key=lambda i: i.order_key):
        members = by_queue.get(item.queue_id)
        if not members:
            continue
        needs = in_force(item.requirements, now) if item.requirements else ()
        if needs:
            members = index.with_skills(item.queue_id, needs)
            offer: Offer | None | object = _match_one(
                item, members, now=now, cooldown=reoffer_cooldown, needs=needs
            )
        else:
            offer = _match_indexed(item, states, index)
            if offer is _UNINDEXED:
                offer = _match_one(item, members, now=now, cooldown=reoffer_cooldown)
        if offer is None:
            continue
        assert isinstance(offer, Offer)
        chosen = states[offer.agent_id]
        old_spare = chosen.spare
        chosen.used += offer.units
        chosen.spare -= offer.units
        chosen.open_count += 1
        chosen.pending += 1
        chosen.last_assigned_at = now
        chosen.pass_seq = len(offers) + 1
        chosen.version += 1
        index.moved(chosen, old_spare)
        offers.append(offer)
    return offers


_UNINDEXED = object()


def _match_indexed(
    item: ItemView, states: dict[int, _AgentState], index: _Index
) -> Offer | None | object:
    """The decision ``_match_one`` would make, from the index, for the common case: an item of
    a fixed size, no skill requirement in force (the caller's), no preferred agent, and no
    refusal by an agent who could take it now. Anything else returns ``_UNINDEXED`` and goes
    through ``_match_one``."""
    units = item.size_units
    if units is None or item.preferred_agent_id is not None:
        return _UNINDEXED
    for agent_id in item.refused_by:
        refuser = states.get(agent_id)
        if (
            refuser is not None
            and _hard_reason(item, refuser.view, refuser.spare, (), refuser.pending) is None
        ):
            return _UNINDEXED
    buckets = index.for_item(item)
    candidates = sum(
        n for bucket in buckets for spare, n in bucket.counts.items() if spare >= units
    )
    if not candidates:
        return None
    model = item.routing_model
    best, second = _best_two(buckets, units, want_second=candidates > 1)
    tie_break = None
    if second is not None:
        first_key, second_key = _model_key(best, model), _model_key(second, model)
        if first_key[0] == second_key[0]:
            tie_break = "longest_idle" if first_key[1] != second_key[1] else "lowest_agent_id"
    return _offer(
        item,
        best,
        reason=_explain(best, model, candidates, tie_break, False, skipped_refusals=0),
    )


def _match_one(
    item: ItemView,
    members: list[_AgentState],
    *,
    now: datetime,
    cooldown: timedelta,
    needs: tuple[Requirement, ...] = (),
) -> Offer | None:
    fresh: list[_AgentState] = []
    cooled: list[_AgentState] = []
    refused_waiting = 0
    # The same checks as ``eligibility``, with the load as the pass has changed it (members of
    # the item's queue who can work: see ``match``). A percentage size is worked out once per
    # capacity, not once per member.
    fixed = item.size_units
    sizes: dict[Units, Units] = {}
    for state in members:
        units: Units | None = fixed
        if units is None:
            units = sizes.get(state.view.capacity)
            if units is None:
                units = sizes[state.view.capacity] = size_for(item, state.view.capacity)
        if _fits(item, state.view, state.spare, units) is not None or _paced(
            state.view, state.pending
        ):
            continue
        if needs and _short_of(needs, state.view.skills) is not None:
            continue
        refused_at = item.refused_by.get(state.view.id)
        if refused_at is None:
            fresh.append(state)
        elif not _cooling(refused_at, now, cooldown):
            cooled.append(state)
        else:
            refused_waiting += 1

    held_for = _held_for(item, now)
    if held_for is not None:
        preferred = [s for s in fresh + cooled if s.view.id == held_for]
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
    ranked = sorted(pool, key=lambda s: _model_key(s, model, needs))
    best = ranked[0]
    tie_break = None
    if len(ranked) > 1:
        first, second = _model_key(best, model, needs), _model_key(ranked[1], model, needs)
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
            needs=needs,
        ),
    )


def _offer(item: ItemView, state: _AgentState, *, reason: dict[str, Any]) -> Offer:
    units = size_for(item, state.view.capacity)
    reason = {
        **reason,
        "open_items_before": state.open_count,
        "spare_before": as_number(state.spare),
        "capacity": as_number(state.view.capacity),
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
    needs: tuple[Requirement, ...] = (),
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if model == MOST_AVAILABLE:
        text = f"Most available: {as_number(state.spare)} spare units"
    elif model == BEST_SKILLED:
        skills = state.view.skills
        total = score(needs, skills)
        text = f"Best skilled: score {level_text(total)}"
        if needs:
            levels = ", ".join(
                f"{n.name or f'skill {n.skill_id}'} {level_text(skills[n.skill_id])}" for n in needs
            )
            text += f" ({levels})"
        else:
            text += " (no skills required)"
        extra = {
            "score": total / 100,
            "levels": {str(n.skill_id): skills[n.skill_id] / 100 for n in needs},
        }
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
        **extra,
        "text": text + ".",
    }


def level_text(hundredths: int) -> str:
    """A skill level or score in words: 750 is "7.5", 500 is "5", 1225 is "12.25"."""
    whole, cents = divmod(hundredths, 100)
    return f"{whole}.{cents:02d}".rstrip("0").rstrip(".") if cents else str(whole)
