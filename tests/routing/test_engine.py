"""The pure matching engine, from tables of cases: no database."""

from datetime import UTC, datetime, timedelta

import pytest

from routing.engine import LEAST_ACTIVE, MOST_AVAILABLE, AgentView, ItemView, match

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
COOLDOWN = timedelta(seconds=60)


def item(id, queue=1, channel=1, rp=1, prio=5, age=0, model=LEAST_ACTIVE, units=1, **kw):
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


def agent(id, cap=10, used=0, open=0, idle=None, channels=(1,), queues=(1,)):
    return AgentView(
        id=id,
        capacity=cap,
        used=used,
        open_count=open,
        last_assigned_at=None if idle is None else NOW - timedelta(seconds=idle),
        channel_ids=frozenset(channels),
        queue_ids=frozenset(queues),
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
    # 25% of 6 is 1.5, rounded up to 2 units: one spare unit is not enough.
    assert match([it], [agent(1, cap=6, used=5)], now=NOW, reoffer_cooldown=COOLDOWN) == []
    offers = match(
        [it],
        [agent(1, cap=6, used=4), agent(2, cap=20, used=14)],
        now=NOW,
        reoffer_cooldown=COOLDOWN,
    )
    # Both have 0 open items and never had work: the lower id wins.
    assert [(o.agent_id, o.units) for o in offers] == [(1, 2)]
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
        )
        for a in range(1, rng.randint(2, 25))
    ]
    items = []
    for i in range(1, rng.randint(2, 80)):
        kw = {}
        if rng.random() < 0.15:
            kw["refused_by"] = {
                rng.randint(1, 25): NOW - timedelta(seconds=rng.choice([5, 90]))
                for _ in range(rng.randint(1, 3))
            }
        if rng.random() < 0.05:
            kw["preferred_agent_id"] = rng.randint(1, 25)
            kw["preferred_until"] = NOW + timedelta(seconds=rng.choice([-5, 60]))
        queue = rng.randint(1, 4)
        model = LEAST_ACTIVE if queue % 2 else MOST_AVAILABLE
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
    assert indexed == decide()
