"""The pure matching engine, from tables of cases: no database."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from routing.engine import (
    BEST_SKILLED,
    LEAST_ACTIVE,
    MOST_AVAILABLE,
    AgentView,
    Ineligible,
    ItemView,
    Reason,
    Requirement,
    eligibility,
    explain,
    hard_ineligibility,
    has_room,
    level_text,
    match,
    size_for,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
COOLDOWN = timedelta(seconds=60)
MODELS = [LEAST_ACTIVE, MOST_AVAILABLE, BEST_SKILLED]


def item(id, queue=1, channel=1, rp=1, prio=5, age=0, model=LEAST_ACTIVE, units=1, **kw):
    # ``units=None`` with ``size_percent=...`` for a percentage size.
    return ItemView(
        id=id,
        queue_id=queue,
        channel_id=channel,
        routing_priority=rp,
        priority=prio,
        enqueued_at=NOW - timedelta(seconds=age),
        routing_model=model,
        size_units=units,
        **kw,
    )


def agent(
    id,
    cap=10,
    used=0,
    open=0,
    idle=None,
    channels=(1,),
    queues=(1,),
    skills=None,
    pending=0,
    limit=None,
):
    return AgentView(
        id=id,
        capacity=cap,
        used=used,
        open_count=open,
        last_assigned_at=None if idle is None else NOW - timedelta(seconds=idle),
        channel_ids=frozenset(channels),
        queue_ids=frozenset(queues),
        skills=skills or {},
        pending_offers=pending,
        max_offers=limit,
    )


def pairs(offers):
    return [(o.item_id, o.agent_id) for o in offers]


@pytest.mark.parametrize(
    ("items", "agents", "expected"),
    [
        # Routing priority wins across queues, even over age.
        (
            [item(1, queue=2, rp=2, age=100), item(2, queue=1, rp=1, age=1)],
            [agent(7, cap=1, queues=(1, 2))],
            [(2, 7)],
        ),
        # Then the item's own priority.
        ([item(1, prio=5, age=100), item(2, prio=1, age=1)], [agent(7, cap=1)], [(2, 7)]),
        # Then oldest first.
        ([item(1, age=10), item(2, age=20)], [agent(7, cap=1)], [(2, 7)]),
        # Only members of the item's queue.
        ([item(1, queue=2)], [agent(7, queues=(1,)), agent(8, queues=(2,))], [(1, 8)]),
        # Only agents available for the item's channel.
        ([item(1, channel=2)], [agent(7, channels=(1,)), agent(8, channels=(1, 2))], [(1, 8)]),
        # Never beyond capacity: a 3-unit item skips the agent with 2 spare units.
        (
            [item(1, units=3)],
            [agent(7, cap=10, used=8), agent(8, cap=10, used=7, open=5)],
            [(1, 8)],
        ),
        # Nobody has room: no offer.
        ([item(1, units=3)], [agent(7, cap=2)], []),
    ],
)
def test_eligibility_and_order(items, agents, expected):
    assert pairs(match(items, agents, now=NOW, reoffer_cooldown=COOLDOWN)) == expected


def test_least_active_picks_fewest_open_items_then_longest_idle_then_lowest_id():
    agents = [
        agent(1, open=2, used=2),
        agent(2, open=1, used=5, idle=10),
        agent(3, open=1, used=5, idle=300),
        agent(4, open=1, used=5, idle=300),
    ]
    offers = match([item(9)], agents, now=NOW, reoffer_cooldown=COOLDOWN)
    assert pairs(offers) == [(9, 3)]
    assert offers[0].reason["tie_break"] == "lowest_agent_id"
    assert offers[0].reason["candidates"] == 4


def test_most_available_picks_most_spare_capacity_and_ties_on_idle_time():
    agents = [
        agent(1, cap=10, used=2, idle=5),
        agent(2, cap=10, used=2, idle=50),
        agent(3, cap=10, used=6),
    ]
    offers = match([item(9, model=MOST_AVAILABLE)], agents, now=NOW, reoffer_cooldown=COOLDOWN)
    assert pairs(offers) == [(9, 2)]
    assert offers[0].reason["tie_break"] == "longest_idle"
    assert "Most available: 8 spare units" in offers[0].reason["text"]


def test_never_assigned_agent_counts_as_idle_longest():
    offers = match([item(9)], [agent(1, idle=10_000), agent(2)], now=NOW, reoffer_cooldown=COOLDOWN)
    assert pairs(offers) == [(9, 2)]


def test_batch_updates_load_between_items_and_spreads_work():
    offers = match(
        [item(i, age=100 - i) for i in range(1, 5)],
        [agent(1), agent(2)],
        now=NOW,
        reoffer_cooldown=COOLDOWN,
    )
    assert pairs(offers) == [(1, 1), (2, 2), (3, 1), (4, 2)]


def test_mixed_sizes_fill_capacity_exactly():
    items = [
        item(1, units=5, age=5),
        item(2, units=3, age=4),
        item(3, units=3, age=3),
        item(4, units=2, age=2),
    ]
    offers = match(items, [agent(1, cap=10)], now=NOW, reoffer_cooldown=COOLDOWN)
    # 5 + 3 = 8; item 3 (3 units) no longer fits; item 4 (2 units) does: 10.
    assert pairs(offers) == [(1, 1), (2, 1), (4, 1)]
    assert sum(o.units for o in offers) == 10


def test_percentage_size_depends_on_each_agents_capacity():
    it = ItemView(
        id=1,
        queue_id=1,
        channel_id=1,
        routing_priority=1,
        priority=5,
        enqueued_at=NOW,
        routing_model=LEAST_ACTIVE,
        size_percent=25,
    )
    # 25% of 6 is 1.5 units, exactly: one spare unit is not enough, 1.5 is.
    assert match([it], [agent(1, cap=6, used=5)], now=NOW, reoffer_cooldown=COOLDOWN) == []
    offers = match(
        [it],
        [agent(1, cap=6, used=Decimal("4.5")), agent(2, cap=20, used=14)],
        now=NOW,
        reoffer_cooldown=COOLDOWN,
    )
    # Both have 0 open items and never had work: the lower id wins.
    assert [(o.agent_id, o.units) for o in offers] == [(1, Decimal("1.5"))]
    offers = match([it], [agent(2, cap=20, used=14)], now=NOW, reoffer_cooldown=COOLDOWN)
    assert [(o.agent_id, o.units) for o in offers] == [(2, 5)]  # 25% of 20


def test_agent_who_refused_is_skipped_while_someone_else_can_take_it():
    it = item(1, refused_by={1: NOW - timedelta(seconds=5)})
    offers = match([it], [agent(1), agent(2, open=3, used=3)], now=NOW, reoffer_cooldown=COOLDOWN)
    assert pairs(offers) == [(1, 2)]
    assert "skipped 1 agent(s) who refused it before" in offers[0].reason["text"]


def test_only_agent_who_refused_gets_it_again_after_cooldown_not_before():
    refused = {1: NOW - timedelta(seconds=30)}
    assert (
        match([item(1, refused_by=refused)], [agent(1)], now=NOW, reoffer_cooldown=COOLDOWN) == []
    )
    later = NOW + timedelta(seconds=31)
    offers = match([item(1, refused_by=refused)], [agent(1)], now=later, reoffer_cooldown=COOLDOWN)
    assert pairs(offers) == [(1, 1)]
    assert offers[0].reason["reoffer_after_cooldown"] is True


def test_preferred_agent_gets_the_item_and_it_waits_for_them_until_the_preference_lapses():
    until = NOW + timedelta(seconds=60)
    sticky = item(1, preferred_agent_id=2, preferred_until=until)
    offers = match(
        [sticky], [agent(1), agent(2, open=5, used=5)], now=NOW, reoffer_cooldown=COOLDOWN
    )
    assert pairs(offers) == [(1, 2)]
    assert offers[0].reason["rule"] == "preferred_agent"
    # Preferred agent full: the item waits rather than going to agent 1 ...
    assert (
        match([sticky], [agent(1), agent(2, cap=5, used=5)], now=NOW, reoffer_cooldown=COOLDOWN)
        == []
    )
    # ... until the preference lapses.
    offers = match(
        [sticky], [agent(1), agent(2, cap=5, used=5)], now=until, reoffer_cooldown=COOLDOWN
    )
    assert pairs(offers) == [(1, 1)]


def test_input_order_does_not_change_the_decision():
    items = [item(i, rp=1 + i % 3, prio=1 + i % 2, age=i * 7 % 11) for i in range(1, 30)]
    agents = [agent(a, cap=4, idle=a * 13 % 7) for a in range(1, 6)]
    forward = pairs(match(items, agents, now=NOW, reoffer_cooldown=COOLDOWN))
    backward = pairs(
        match(list(reversed(items)), list(reversed(agents)), now=NOW, reoffer_cooldown=COOLDOWN)
    )
    assert forward == backward
    assert len(forward) == 20  # 5 agents x 4 units


@pytest.mark.parametrize("seed", range(200))
def test_indexed_matching_decides_exactly_as_scanning_every_member(seed, monkeypatch):
    # The engine answers most items from an index (heaps per queue, channel and spare capacity)
    # and the rest by scanning every member; both must make the same offers with the same
    # reasons, on random tables with ties, refusals, preferred agents and percentage sizes.
    import random

    from routing import engine

    rng = random.Random(seed)
    agents = [
        agent(
            a,
            cap=(cap := rng.randint(1, 12)),
            used=(used := rng.randint(0, cap)),
            open=min(used, rng.randint(0, 3)),
            idle=rng.choice([None, 10, 20, 20, 300]),
            channels=rng.sample([1, 2, 3], rng.randint(1, 3)),
            queues=rng.sample([1, 2, 3, 4], rng.randint(1, 3)),
            skills=random_skills(rng),
            pending=(pending := rng.randint(0, 2)),
            limit=rng.choice([None, None, 1, 2, 3]) if pending < 2 else rng.choice([None, 3]),
        )
        for a in range(1, rng.randint(2, 25))
    ]
    items = []
    for i in range(1, rng.randint(2, 80)):
        kw = {"requirements": random_requirements(rng)}
        if rng.random() < 0.15:
            kw["refused_by"] = {
                rng.randint(1, 25): NOW - timedelta(seconds=rng.choice([5, 90]))
                for _ in range(rng.randint(1, 3))
            }
        if rng.random() < 0.05:
            kw["preferred_agent_id"] = rng.randint(1, 25)
            kw["preferred_until"] = NOW + timedelta(seconds=rng.choice([-5, 60]))
        queue = rng.randint(1, 4)
        model = [LEAST_ACTIVE, MOST_AVAILABLE, BEST_SKILLED][queue % 3]
        if rng.random() < 0.1:
            items.append(
                ItemView(
                    id=i,
                    queue_id=queue,
                    channel_id=rng.randint(1, 3),
                    routing_priority=1 + queue % 2,
                    priority=rng.randint(1, 3),
                    enqueued_at=NOW - timedelta(seconds=rng.randint(0, 9)),
                    routing_model=model,
                    size_percent=rng.choice([10, 25, 50]),
                    **kw,
                )
            )
        else:
            items.append(
                item(
                    i,
                    queue=queue,
                    channel=rng.randint(1, 3),
                    rp=1 + queue % 2,
                    prio=rng.randint(1, 3),
                    age=rng.randint(0, 9),
                    model=model,
                    units=rng.randint(1, 5),
                    **kw,
                )
            )

    def decide():
        return [
            (o.item_id, o.agent_id, o.units, o.reason)
            for o in match(items, agents, now=NOW, reoffer_cooldown=COOLDOWN)
        ]

    indexed = decide()
    monkeypatch.setattr(engine, "_match_indexed", lambda *args, **kwargs: engine._UNINDEXED)
    # Items with requirements scan only the members with their rarest skill: scanning every
    # member of the queue must decide the same.
    monkeypatch.setattr(
        engine._Index, "with_skills", lambda self, queue_id, needs: self.by_queue[queue_id]
    )
    assert indexed == decide()


def random_skills(rng):
    """An agent's skills for the random tables: a few of skills 1-4, at levels 0-9.5."""
    return {
        s: rng.choice([0, 250, 500, 750, 950]) for s in rng.sample([1, 2, 3, 4], rng.randint(0, 3))
    }


def random_requirements(rng):
    """0-2 requirements of skills 1-4; some additional, dropped already or not yet."""
    if rng.random() < 0.5:
        return ()
    return tuple(
        Requirement(
            skill_id=s,
            min_level=rng.choice([0, 250, 500]),
            additional=(additional := rng.random() < 0.4),
            drops_at=NOW + timedelta(seconds=rng.choice([-10, 0, 30])) if additional else None,
            name=f"S{s}",
        )
        for s in rng.sample([1, 2, 3, 4], rng.randint(1, 2))
    )


# --- Eligibility: who may take an item, and why not --------------------------------------------


def view(
    id,
    cap=10,
    used=0,
    channels=(1,),
    queues=(1,),
    online=True,
    console=True,
    skills=None,
    pending=0,
    limit=None,
):
    return AgentView(
        id=id,
        capacity=cap,
        used=used,
        open_count=0,
        last_assigned_at=None,
        channel_ids=frozenset(channels),
        queue_ids=frozenset(queues),
        online=online,
        console_live=console,
        skills=skills or {},
        pending_offers=pending,
        max_offers=limit,
    )


@pytest.mark.parametrize(
    ("it", "who", "expected"),
    [
        (item(1), view(7), None),
        (item(1, queue=2), view(7), Ineligible(Reason.NOT_MEMBER)),
        # Membership comes first: an outsider who is also offline is an outsider.
        (item(1, queue=2), view(7, online=False), Ineligible(Reason.NOT_MEMBER)),
        (item(1), view(7, online=False), Ineligible(Reason.OFFLINE)),
        # "Busy": online for no channel.
        (item(1), view(7, channels=()), Ineligible(Reason.CHANNEL)),
        (item(1, channel=2), view(7, channels=(1,)), Ineligible(Reason.CHANNEL)),
        (item(1), view(7, console=False), Ineligible(Reason.NO_CONSOLE)),
        (item(1, units=3), view(7, used=8), Ineligible(Reason.CAPACITY, spare=2, needed=3)),
        (item(1, units=3), view(7, used=7), None),
        # 25 % of 6 is 1.5 units: one spare is not enough, 1.5 is.
        (
            item(1, units=None, size_percent=25),
            view(7, cap=6, used=5),
            Ineligible(Reason.CAPACITY, spare=1, needed=Decimal("1.5")),
        ),
        (item(1, units=None, size_percent=25), view(7, cap=6, used=Decimal("4.5")), None),
        # Pacing: two unanswered offers, two allowed at once; one fewer, or no limit, is fine.
        (item(1), view(7, pending=2, limit=2), Ineligible(Reason.PACING, offers=2)),
        (item(1), view(7, pending=1, limit=2), None),
        (item(1), view(7, pending=5), None),
        # Capacity is named before pacing.
        (
            item(1, units=3),
            view(7, used=8, pending=2, limit=2),
            Ineligible(Reason.CAPACITY, spare=2, needed=3),
        ),
        # A pacing limit stops even the preferred agent, and is hard (a push obeys it).
        (
            item(1, preferred_agent_id=7, preferred_until=NOW + timedelta(seconds=30)),
            view(7, pending=1, limit=1),
            Ineligible(Reason.PACING, offers=1),
        ),
        (
            item(1, refused_by={7: NOW - timedelta(seconds=20)}),
            view(7),
            Ineligible(Reason.REFUSED, until=NOW + timedelta(seconds=40)),
        ),
        # Cooled down: eligible again, unless someone who did not refuse it can take it.
        (item(1, refused_by={7: NOW - timedelta(seconds=60)}), view(7), None),
        (
            item(1, preferred_agent_id=8, preferred_until=NOW + timedelta(seconds=30)),
            view(7),
            Ineligible(Reason.PREFERRED_AGENT, until=NOW + timedelta(seconds=30)),
        ),
        (item(1, preferred_agent_id=7, preferred_until=NOW + timedelta(seconds=30)), view(7), None),
        # The preference has lapsed.
        (item(1, preferred_agent_id=8, preferred_until=NOW), view(7), None),
        # A hard reason wins over the router's choices.
        (
            item(1, preferred_agent_id=8, preferred_until=NOW + timedelta(seconds=30)),
            view(7, online=False),
            Ineligible(Reason.OFFLINE),
        ),
    ],
)
def test_eligibility_names_the_reason(it, who, expected):
    assert eligibility(it, who, now=NOW, reoffer_cooldown=COOLDOWN) == expected


def test_an_agent_who_refused_and_cooled_down_waits_while_others_can_take_it():
    it = item(1, refused_by={7: NOW - timedelta(seconds=90)})
    assert eligibility(
        it, view(7), now=NOW, reoffer_cooldown=COOLDOWN, others_can_take=True
    ) == Ineligible(Reason.REFUSED_OTHERS_FIRST)
    assert explain(it, [view(7), view(8)], now=NOW, reoffer_cooldown=COOLDOWN) == {
        7: Ineligible(Reason.REFUSED_OTHERS_FIRST),
        8: None,
    }
    # Agent 8 full: no one else can, so agent 7 may have it again.
    assert explain(it, [view(7), view(8, used=10)], now=NOW, reoffer_cooldown=COOLDOWN) == {
        7: None,
        8: Ineligible(Reason.CAPACITY, spare=0, needed=1),
    }


def test_hard_reasons_are_what_a_supervisor_push_obeys():
    assert {r for r in Reason if Ineligible(r).hard} == {
        Reason.NOT_MEMBER,
        Reason.SKILL,
        Reason.OFFLINE,
        Reason.CHANNEL,
        Reason.NO_CONSOLE,
        Reason.CAPACITY,
        Reason.PACING,
    }


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        (view(7), True),
        (view(7, used=9), True),
        (view(7, used=10), False),
        (view(7, channels=()), False),
        (view(7, online=False), False),
        (view(7, console=False), False),
        (view(7, pending=3, limit=3), False),
        (view(7, pending=2, limit=3), True),
    ],
)
def test_room_for_more(who, expected):
    assert has_room(who) is expected


FIXED = [item(i, age=10 - i) for i in range(1, 7)]
PERCENT = [item(i, age=10 - i, units=None, size_percent=10) for i in range(1, 7)]


@pytest.mark.parametrize(
    ("items", "agents", "expected"),
    [
        # Six items, room for all of them, two offers at once: two offers.
        (FIXED, [agent(7, limit=2)], [(1, 7), (2, 7)]),
        # One already pending: one more.
        (FIXED, [agent(7, pending=1, limit=2)], [(1, 7)]),
        # Accepted work (open, used) does not count against the limit.
        (FIXED, [agent(7, used=4, open=4, limit=2)], [(1, 7), (2, 7)]),
        # The rest go to an agent without a limit.
        (FIXED, [agent(7, limit=1), agent(8, cap=3)], [(1, 7), (2, 8), (3, 8), (4, 8)]),
        # Percentage sizes are matched by scanning the members: paced all the same.
        (PERCENT, [agent(7, limit=1)], [(1, 7)]),
        # (10 % of 2 is 0.2 units: all six fit with agent 8.)
        (PERCENT, [agent(7, pending=1, limit=1), agent(8, cap=2)], [(i, 8) for i in range(1, 7)]),
    ],
)
def test_match_counts_the_offers_it_makes_against_the_agents_limit(items, agents, expected):
    assert pairs(match(items, agents, now=NOW, reoffer_cooldown=COOLDOWN)) == expected


def test_match_leaves_out_agents_offline_or_without_a_live_console():
    agents = [view(7, online=False), view(8, console=False), view(9, cap=1)]
    assert pairs(match([item(1), item(2)], agents, now=NOW, reoffer_cooldown=COOLDOWN)) == [(1, 9)]


def test_size_for_fixed_and_percentage_sizes():
    assert size_for(item(1, units=3), 20) == 3
    assert size_for(item(1, units=None, size_percent=25), 20) == 5
    assert size_for(item(1, units=None, size_percent=25), 6) == Decimal("1.5")  # exact
    assert size_for(item(1, units=None, size_percent=33), 1) == Decimal("0.33")
    assert size_for(item(1, units=None, size_percent=1), 1) == Decimal("0.01")
    # A capacity in force that is not whole (held above a lowered capacity): rounded up to
    # the hundredth, never down.
    assert size_for(item(1, units=None, size_percent=33), Decimal("2.5")) == Decimal("0.83")
    assert size_for(item(1, units=None), 6) == 6  # no size: all of it


@pytest.mark.parametrize(
    ("sizes", "capacity", "fit"),
    [
        # 50 % of any capacity: exactly two fit (capacity 3 once took only one: 50 % of 3
        # rounded up to 2 units).
        ([50, 50, 50], 1, 2),
        ([50, 50, 50], 2, 2),
        ([50, 50, 50], 3, 2),
        ([50, 50, 50], 7, 2),
        # 33 %: three fit, whatever the capacity; a fourth does not (1 % is left).
        ([33, 33, 33, 33], 1, 3),
        ([33, 33, 33, 33], 2, 3),
        ([33, 33, 33, 33], 3, 3),
        ([33, 33, 33, 33], 7, 3),
        # Mixed: a one-unit item and two 50 % items of capacity 3 (1 + 1.5 = 2.5; the second
        # 50 % needs 1.5 of the 0.5 left).
        ([None, 50, 50], 3, 2),
        # 2 units + 33 % of 3 (0.99) = 2.99: a one-unit item no longer fits.
        ([None, None, 33, None], 3, 3),
    ],
)
def test_percentage_sizes_add_up_exactly(sizes, capacity, fit):
    items = [
        item(i, age=10 - i, units=1 if p is None else None, size_percent=p)
        for i, p in enumerate(sizes, start=1)
    ]
    offers = match(items, [agent(7, cap=capacity)], now=NOW, reoffer_cooldown=COOLDOWN)
    assert len(offers) == fit
    used = sum((o.units for o in offers), Decimal(0))
    assert used <= capacity
    # What is left is exactly what eligibility says is spare for the next item.
    rest = agent(7, cap=capacity, used=used)
    nxt = items[fit] if fit < len(items) else None
    if nxt is not None:
        why = eligibility(nxt, rest, now=NOW, reoffer_cooldown=COOLDOWN)
        assert why == Ineligible(
            Reason.CAPACITY, spare=capacity - used, needed=size_for(nxt, capacity)
        )


@pytest.mark.parametrize("seed", range(300))
def test_match_offers_an_item_to_one_of_the_agents_explain_calls_eligible(seed):
    # One predicate: for a single item, match makes an offer exactly when explain finds someone
    # eligible, and to one of them; the candidates it counts are explain's eligible agents.
    import random

    rng = random.Random(seed)
    agents = [
        view(
            a,
            cap=(cap := rng.randint(1, 8)),
            used=rng.randint(0, cap),
            channels=rng.sample([1, 2], rng.randint(0, 2)),
            queues=rng.sample([1, 2], rng.randint(1, 2)),
            online=rng.random() < 0.8,
            console=rng.random() < 0.8,
            skills=random_skills(rng),
            pending=(pending := rng.randint(0, 2)),
            limit=rng.choice([None, 1, 2, 3]) if pending < 2 else rng.choice([None, 2, 3]),
        )
        for a in range(1, rng.randint(1, 8))
    ]
    kw = {"requirements": random_requirements(rng), "model": rng.choice(MODELS)}
    if rng.random() < 0.4:
        kw["refused_by"] = {
            rng.randint(1, 8): NOW - timedelta(seconds=rng.choice([5, 90]))
            for _ in range(rng.randint(1, 3))
        }
    if rng.random() < 0.2:
        kw["preferred_agent_id"] = rng.randint(1, 8)
        kw["preferred_until"] = NOW + timedelta(seconds=rng.choice([-5, 60]))
    if rng.random() < 0.3:
        kw["units"], kw["size_percent"] = None, rng.choice([10, 25, 50])
    else:
        kw["units"] = rng.randint(1, 4)
    it = item(1, queue=rng.randint(1, 2), channel=rng.randint(1, 2), **kw)

    eligible = {
        a for a, why in explain(it, agents, now=NOW, reoffer_cooldown=COOLDOWN).items() if not why
    }
    offers = match([it], agents, now=NOW, reoffer_cooldown=COOLDOWN)

    assert bool(offers) == bool(eligible)
    # A supervisor's push obeys skills too: the hard reasons say no to whoever lacks them.
    for a in agents:
        if a.id in eligible:
            assert hard_ineligibility(it, a, now=NOW) is None
    if offers:
        assert offers[0].agent_id in eligible
        if offers[0].reason["rule"] == "routing_model":
            assert offers[0].reason["candidates"] == len(eligible)


# --- Skills: requirements, levels, relaxation, best skilled -------------------------------------

BILLING = Requirement(skill_id=1, min_level=500, name="Billing")
JAPANESE_FOR_30S = Requirement(
    skill_id=2, additional=True, drops_at=NOW + timedelta(seconds=30), name="Japanese"
)


@pytest.mark.parametrize(
    ("requirements", "skills", "at", "expected"),
    [
        # No requirement: skills do not matter.
        ((), {}, 0, None),
        # Lacks it: the reason names the skill and no level.
        ((BILLING,), {}, 0, Ineligible(Reason.SKILL, skill=BILLING, level=None)),
        # Has it below the minimum level.
        ((BILLING,), {1: 300}, 0, Ineligible(Reason.SKILL, skill=BILLING, level=300)),
        # At the minimum level is enough.
        ((BILLING,), {1: 500}, 0, None),
        ((BILLING,), {1: 9999}, 0, None),
        # The first requirement they fall short of is named.
        (
            (BILLING, JAPANESE_FOR_30S),
            {1: 500},
            0,
            Ineligible(Reason.SKILL, skill=JAPANESE_FOR_30S, level=None),
        ),
        # An additional requirement counts until it drops, not from then on.
        ((JAPANESE_FOR_30S,), {}, 29, Ineligible(Reason.SKILL, skill=JAPANESE_FOR_30S)),
        ((JAPANESE_FOR_30S,), {}, 30, None),
        # A required one never drops.
        ((BILLING,), {}, 10_000, Ineligible(Reason.SKILL, skill=BILLING)),
    ],
)
def test_skills_the_item_requires_now_at_their_minimum_level(requirements, skills, at, expected):
    it = item(1, requirements=requirements)
    when = NOW + timedelta(seconds=at)
    assert eligibility(it, view(7, skills=skills), now=when, reoffer_cooldown=COOLDOWN) == expected
    assert bool(match([it], [view(7, skills=skills)], now=when, reoffer_cooldown=COOLDOWN)) is (
        expected is None
    )


def test_a_missing_skill_comes_after_membership_and_before_presence():
    it = item(1, requirements=(BILLING,))
    assert eligibility(
        item(1, queue=2, requirements=(BILLING,)), view(7), now=NOW, reoffer_cooldown=COOLDOWN
    ) == Ineligible(Reason.NOT_MEMBER)
    # Offline and without the skill: the skill is the reason (coming online would not help).
    assert eligibility(it, view(7, online=False), now=NOW, reoffer_cooldown=COOLDOWN) == (
        Ineligible(Reason.SKILL, skill=BILLING)
    )
    # A supervisor's push obeys it, and it is hard: refusals and preferences do not matter.
    assert hard_ineligibility(it, view(7), now=NOW) == Ineligible(Reason.SKILL, skill=BILLING)
    assert Ineligible(Reason.SKILL).hard


def test_a_required_skill_routes_past_a_less_loaded_agent_who_lacks_it():
    agents = [agent(1), agent(2, open=3, used=3, skills={1: 500})]
    offers = match([item(9, requirements=(BILLING,))], agents, now=NOW, reoffer_cooldown=COOLDOWN)
    assert pairs(offers) == [(9, 2)]
    assert offers[0].reason["candidates"] == 1


def test_relaxation_widens_the_item_to_agents_without_the_additional_skill():
    it = item(9, requirements=(JAPANESE_FOR_30S,))
    agents = [agent(1)]
    assert match([it], agents, now=NOW + timedelta(seconds=29), reoffer_cooldown=COOLDOWN) == []
    offers = match([it], agents, now=NOW + timedelta(seconds=30), reoffer_cooldown=COOLDOWN)
    assert pairs(offers) == [(9, 1)]


def test_best_skilled_picks_the_highest_sum_of_levels_and_says_so():
    needs = (BILLING, Requirement(skill_id=2, name="Japanese"))
    agents = [
        agent(1, skills={1: 900, 2: 100}),  # 10
        agent(2, skills={1: 750, 2: 500}),  # 12.5
        agent(3, skills={1: 500, 2: 0, 3: 9999}),  # 5: skill 3 is not required
        agent(4, skills={1: 9999}),  # lacks Japanese: not a candidate
    ]
    offers = match(
        [item(9, model=BEST_SKILLED, requirements=needs)],
        agents,
        now=NOW,
        reoffer_cooldown=COOLDOWN,
    )
    assert pairs(offers) == [(9, 2)]
    reason = offers[0].reason
    assert (reason["model"], reason["score"], reason["levels"], reason["tie_break"]) == (
        "best_skilled",
        12.5,
        {"1": 7.5, "2": 5.0},
        None,
    )
    assert reason["text"] == (
        "Best skilled: score 12.5 (Billing 7.5, Japanese 5), best of 3 eligible agents."
    )


def test_best_skilled_ties_go_to_longest_idle_then_lowest_id_and_dropped_skills_do_not_score():
    needs = (BILLING, JAPANESE_FOR_30S)
    later = NOW + timedelta(seconds=30)  # Japanese has dropped: only Billing scores
    agents = [
        agent(1, idle=10, skills={1: 600}),
        agent(2, idle=300, skills={1: 600}),
        agent(3, idle=300, skills={1: 500, 2: 9999}),
        agent(4, idle=300, skills={1: 600}),
    ]
    offers = match(
        [item(9, model=BEST_SKILLED, requirements=needs)],
        agents,
        now=later,
        reoffer_cooldown=COOLDOWN,
    )
    assert pairs(offers) == [(9, 2)]
    assert (offers[0].reason["score"], offers[0].reason["tie_break"]) == (6.0, "lowest_agent_id")
    assert offers[0].reason["text"].startswith("Best skilled: score 6 (Billing 6), best of 4")
    # Agents 2 and 4 idle as long, 1 less: without agent 2, 4 wins on idle time over 1.
    offers = match(
        [item(9, model=BEST_SKILLED, requirements=needs)],
        [agents[0], agents[3]],
        now=later,
        reoffer_cooldown=COOLDOWN,
    )
    assert pairs(offers) == [(9, 4)]
    assert offers[0].reason["tie_break"] == "longest_idle"


def test_best_skilled_without_requirements_is_a_tie_between_everyone():
    offers = match(
        [item(9, model=BEST_SKILLED)],
        [agent(1, idle=10), agent(2, idle=50), agent(3, idle=20)],
        now=NOW,
        reoffer_cooldown=COOLDOWN,
    )
    assert pairs(offers) == [(9, 2)]
    assert offers[0].reason["text"] == (
        "Best skilled: score 0 (no skills required), best of 3 eligible agents;"
        " tie broken by longest time since last assignment."
    )


def test_skilled_agents_fill_up_within_a_batch():
    items = [item(i, age=10 - i, requirements=(BILLING,)) for i in range(1, 5)]
    agents = [agent(1, cap=2, skills={1: 500}), agent(2, cap=10)]
    offers = match(items, agents, now=NOW, reoffer_cooldown=COOLDOWN)
    assert pairs(offers) == [(1, 1), (2, 1)]


@pytest.mark.parametrize(
    ("hundredths", "text"), [(0, "0"), (500, "5"), (750, "7.5"), (1225, "12.25"), (1000, "10")]
)
def test_level_text(hundredths, text):
    assert level_text(hundredths) == text
