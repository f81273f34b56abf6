"""The routing pass's prefilter (SQL on PostgreSQL, the ORM elsewhere) against the engine's rule,
on random small worlds in the database: it must leave out no agent and no item the engine would
offer. Refusals and preferred agents are the engine's to apply afterwards, so the worlds have
none. Agents have skills and items require them (some additional, dropped or not yet): skills
never narrow the page, and the skills the pass reads for its locked agents are theirs. Agents may
hold unanswered offers, some under an offer limit (pacing)."""

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from presence.models import Agent, PresenceConfiguration
from routing import engine
from routing.models import AgentSkill, AgentWork, ItemSkill, QueueMembership, Skill, WorkItem
from routing.selectors import agent_views, item_requirements
from routing.services.routing_pass import (
    _lock_agents_with_room,
    _requirements,
    _room_by_queue,
    _WaitingFilter,
    _with_skills,
)
from tests.factories import QueueFactory, ServiceChannelFactory, make_status

NOW = timezone.now().replace(microsecond=0)
GRACE = 30
COOLDOWN = timedelta(seconds=60)
MAX_KEY = (99, 99, 99, NOW + timedelta(days=1), 2**62)
LEVELS = [Decimal("0"), Decimal("2.5"), Decimal("5"), Decimal("7.25")]


def build_world(rng: random.Random):
    channels = [ServiceChannelFactory(key=f"c{n}") for n in range(rng.randint(1, 3))]
    statuses = [None, make_status("Busy", [])]
    statuses.append(make_status("Away", channels, online=False))  # offline, channels or not
    for n in range(rng.randint(1, 3)):
        statuses.append(
            make_status(
                f"Available {n}", rng.sample(channels, rng.randint(1, min(2, len(channels))))
            )
        )
    configs = [
        PresenceConfiguration.objects.create(name="console", console_required=True),
        PresenceConfiguration.objects.create(name="api", console_required=False),
        PresenceConfiguration.objects.create(
            name="paced", console_required=rng.random() < 0.5, max_offers=rng.randint(1, 2)
        ),
        # A limit an auto-accept configuration ignores.
        PresenceConfiguration.objects.create(
            name="auto", console_required=False, auto_accept=True, max_offers=1
        ),
    ]
    queues = [QueueFactory() for _ in range(rng.randint(1, 3))]
    skills = [Skill.objects.create(name=f"skill {n}") for n in range(3)]
    users = get_user_model().objects
    for n in range(rng.randint(0, 9)):
        capacity = rng.randint(1, 6)
        agent = Agent.objects.create(
            user=users.create(username=f"agent{n}"),
            presence_config=rng.choice(configs),
            status=rng.choice(statuses),
            configured_capacity=capacity,
            capacity=capacity,
            used_capacity=rng.randint(0, capacity),
            console_seen_at=rng.choice(
                [None, NOW, NOW - timedelta(seconds=GRACE), NOW - timedelta(seconds=GRACE + 1)]
            ),
        )
        for queue in rng.sample(queues, rng.randint(0, len(queues))):
            QueueMembership.objects.create(queue=queue, agent=agent)
        for skill in rng.sample(skills, rng.randint(0, 2)):
            AgentSkill.objects.create(agent=agent, skill=skill, level=rng.choice(LEVELS))
        for k in range(rng.choice([0, 0, 1, 2])):
            offered = WorkItem.objects.create(
                queue=queues[0],
                channel=channels[0],
                status="offered",
                routing_priority=1,
                size_units=1,
                subject=f"offered {n}.{k}",
                created_at=NOW,
                enqueued_at=NOW,
            )
            AgentWork.objects.create(
                item=offered,
                agent=agent,
                queue=queues[0],
                channel=channels[0],
                state=rng.choice(["pushed", "pushed", "opened"]),
                units=1,
                pushed_at=NOW,
                enqueued_at=NOW,
            )
    for n in range(rng.randint(0, 8)):
        percent = rng.random() < 0.3
        item = WorkItem.objects.create(
            queue=rng.choice(queues),
            channel=rng.choice(channels),
            routing_priority=1,
            size_units=None if percent else rng.randint(1, 4),
            size_percent=rng.choice([10, 50, 100]) if percent else None,
            subject=f"item {n}",
            created_at=NOW,
            enqueued_at=NOW - timedelta(seconds=n),
        )
        for skill in rng.sample(skills, rng.choice([0, 0, 1, 2])):
            additional = rng.random() < 0.4
            ItemSkill.objects.create(
                item=item,
                skill=skill,
                min_level=rng.choice(LEVELS),
                additional=additional,
                # Entered n seconds ago: dropped already for some, not yet for others.
                drop_after_seconds=rng.randint(0, 6) if additional else None,
            )
    return queues


def as_view(item: WorkItem, requirements) -> engine.ItemView:
    return engine.ItemView(
        id=item.pk,
        queue_id=item.queue_id,
        channel_id=item.channel_id,
        routing_priority=item.routing_priority,
        priority=item.priority,
        enqueued_at=item.enqueued_at,
        routing_model=engine.LEAST_ACTIVE,
        size_units=item.size_units,
        size_percent=item.size_percent,
        requirements=requirements.get(item.pk, ()),
    )


def eligible(item: engine.ItemView, agents) -> set[int]:
    why = engine.explain(item, agents, now=NOW, reoffer_cooldown=COOLDOWN)
    return {agent_id for agent_id, reason in why.items() if reason is None}


@pytest.mark.parametrize("raw_sql", [True, False], ids=["sql", "orm"])
@pytest.mark.parametrize("seed", range(30))
def test_prefilter_keeps_exactly_the_agents_and_items_the_engine_would_offer(
    db, settings, seed, raw_sql
):
    settings.CONSOLE_GRACE_SECONDS = GRACE
    queues = build_world(random.Random(seed))
    every_agent = agent_views(Agent.objects.all(), now=NOW)
    rows = list(WorkItem.objects.filter(status="waiting"))
    requirements = item_requirements(rows)
    items = [as_view(i, requirements) for i in rows]

    most_spare, channel_ids = _room_by_queue(NOW, raw_sql=raw_sql)
    page = {pk for _, (*_, pk) in _WaitingFilter(most_spare, channel_ids, None).peek(100)}
    # The pass reads the requirements of a claimed page as the selectors do.
    claimed = _WaitingFilter(None, None, None).claim({q.pk for q in queues}, up_to=MAX_KEY)
    assert {row.id for row in claimed if row.has_skills} == set(requirements)
    assert _requirements([r for r in claimed if r.has_skills], raw_sql=raw_sql) == requirements

    for queue in queues:
        locked = _lock_agents_with_room(NOW, {queue.pk}, raw_sql=raw_sql).agents
        locked = _with_skills(locked, raw_sql=raw_sql)
        members = [a for a in every_agent.values() if queue.pk in a.queue_ids]
        # The agents it locks: members online, with a live console (or none needed), room, and
        # fewer unanswered offers than their limit ...
        assert set(locked) == {
            a.id
            for a in members
            if a.online
            and a.console_live
            and a.spare > 0
            and (a.max_offers is None or a.pending_offers < a.max_offers)
        }
        # ... read as the selector reads them (the pass leaves online and console at True).
        for agent_id, view in locked.items():
            assert view == every_agent[agent_id]
        for item in items:
            if item.queue_id != queue.pk:
                continue
            # The engine decides the same on the locked agents as on everyone ...
            assert eligible(item, locked.values()) == eligible(item, every_agent.values())
            # ... and every item someone could take is on the page.
            if eligible(item, every_agent.values()):
                assert item.id in page
