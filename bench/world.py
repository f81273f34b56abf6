"""The benchmark's world: channels, queues, agents and a backlog, and how to reset it.

Configuration and agents are made with the ORM the way the services make them (what
``create_agent`` and ``set_presence`` write), in bulk: a thousand ``create_user`` calls would
spend minutes hashing passwords the benchmark never uses. Work items are written exactly as
``enqueue_work`` writes them (routing priority copied from the queue's configuration, size from
the channel's default), in bulk for the same reason. Everything is deterministic (fixed seeds).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.utils import timezone

from presence.models import Agent, PresenceConfiguration, PresenceStatus
from routing.models import (
    AgentSkill,
    ItemSkill,
    Queue,
    QueueMembership,
    RoutingConfiguration,
    RoutingModel,
    ServiceChannel,
    Skill,
    WorkItem,
)

CAPACITY = 10
QUEUES = 20
QUEUES_PER_AGENT = 4
# Channel default sizes 1..5: items take 1 to 5 capacity units.
CHANNELS = [("chat", 1), ("messaging", 2), ("case", 3), ("social", 4), ("voice", 5)]


@dataclass
class World:
    queue_ids: list[int]
    channel_ids: list[int]
    agent_ids: list[int]
    agent_user_ids: dict[int, int]  # agent id -> user id
    intake_username: str


def build_world(*, agents: int, seed: int = 1) -> World:
    rng = random.Random(seed)
    now = timezone.now()
    with transaction.atomic():
        channels = [
            ServiceChannel.objects.create(key=key, label=key.title(), default_size_units=size)
            for key, size in CHANNELS
        ]
        queues = []
        for n in range(QUEUES):
            # Four routing priorities across the queues, both routing models.
            config = RoutingConfiguration.objects.create(
                name=f"bench config {n}",
                routing_priority=1 + n % 4,
                routing_model=(
                    RoutingModel.LEAST_ACTIVE if n % 2 == 0 else RoutingModel.MOST_AVAILABLE
                ),
                push_timeout_seconds=600,
            )
            queues.append(Queue.objects.create(name=f"bench queue {n}", routing_config=config))
        status = PresenceStatus.objects.create(name="Available - all channels", is_online=True)
        status.channels.set(channels)
        # API-style agents: routable without a console connection (see CONSOLE_GRACE_SECONDS).
        presence = PresenceConfiguration.objects.create(
            name="bench agents", capacity=CAPACITY, console_required=False
        )
        user_model = get_user_model()
        users = user_model.objects.bulk_create(
            user_model(username=f"bench-agent-{n:04d}", password="!unusable")  # noqa: S106
            for n in range(agents)
        )
        made = Agent.objects.bulk_create(
            Agent(
                user=user,
                presence_config=presence,
                status=status,
                status_changed_at=now,
                configured_capacity=CAPACITY,
                capacity=CAPACITY,
            )
            for user in users
        )
        QueueMembership.objects.bulk_create(
            QueueMembership(queue=queue, agent=agent)
            for agent in made
            for queue in rng.sample(queues, QUEUES_PER_AGENT)
        )
        intake = user_model.objects.create(username="bench-intake", password="!unusable")  # noqa: S106
        intake.groups.add(Group.objects.get_or_create(name="intake")[0])
    return World(
        queue_ids=[q.pk for q in queues],
        channel_ids=[c.pk for c in channels],
        agent_ids=[a.pk for a in made],
        agent_user_ids={a.pk: a.user_id for a in made},
        intake_username=intake.username,
    )


def add_waiting_items(world: World, count: int, *, seed: int) -> None:
    """``count`` more waiting items, spread over queues, channels, priorities and the last hour."""
    rng = random.Random(seed)
    now = timezone.now()
    configs = dict(Queue.objects.values_list("id", "routing_config__routing_priority"))
    sizes = dict(ServiceChannel.objects.values_list("id", "default_size_units"))
    chunk = 5000
    for start in range(0, count, chunk):
        items = []
        for _ in range(min(chunk, count - start)):
            queue_id = rng.choice(world.queue_ids)
            channel_id = rng.choice(world.channel_ids)
            enqueued = now - timedelta(seconds=rng.uniform(0, 3600))
            items.append(
                WorkItem(
                    queue_id=queue_id,
                    channel_id=channel_id,
                    subject=f"Bench item {start}",
                    priority=rng.randint(1, 10),
                    payload={"customer": f"Customer {rng.randint(1, 50000)}"},
                    routing_priority=configs[queue_id],
                    size_units=sizes[channel_id],
                    created_at=enqueued,
                    enqueued_at=enqueued,
                )
            )
        WorkItem.objects.bulk_create(items, batch_size=chunk)
    vacuum()


# The skills world: a few common skills and a long tail of rare ones (popularity weights), for
# agents and items alike, so most requirements can be met by someone and some by few.
SKILLS = [
    ("English", 10),
    ("Billing", 8),
    ("Technical", 6),
    ("Japanese", 5),
    ("Spanish", 4),
    ("Returns", 3),
    ("Premium", 2),
    ("German", 2),
    ("Legal", 1),
    ("Mandarin", 1),
    ("Insurance", 1),
    ("Escalations", 1),
]


def _some(rng: random.Random, ids: list[int], weights: list[int], count: int) -> set[int]:
    chosen: set[int] = set()
    while len(chosen) < count:
        chosen.add(rng.choices(ids, weights=weights)[0])
    return chosen


def add_skills(world: World, *, seed: int) -> tuple[int, int]:
    """Skills for every agent (1 to 5 each, levels 1 to 10) and 0 to 3 requirements for every
    waiting item (minimum level 0, 2 or 4; a third of them additional, dropped after 1 to 60
    minutes of waiting, so some have dropped already). Written as ``require_skills`` writes
    them, in bulk. Returns (agent skills, item requirements) written."""
    rng = random.Random(seed)
    skills = [Skill.objects.create(name=name) for name, _ in SKILLS]
    ids = [s.pk for s in skills]
    weights = [w for _, w in SKILLS]
    agent_rows = [
        AgentSkill(
            agent_id=agent_id,
            skill_id=skill_id,
            level=Decimal(rng.choice(range(100, 1001, 50))) / 100,
        )
        for agent_id in world.agent_ids
        for skill_id in _some(rng, ids, weights, rng.randint(1, 5))
    ]
    AgentSkill.objects.bulk_create(agent_rows, batch_size=5000)
    item_ids = list(WorkItem.objects.filter(status="waiting").values_list("id", flat=True))
    written = 0
    chunk: list[ItemSkill] = []
    for item_id in item_ids:
        for skill_id in _some(rng, ids, weights, rng.randint(0, 3)):
            additional = rng.random() < 1 / 3
            chunk.append(
                ItemSkill(
                    item_id=item_id,
                    skill_id=skill_id,
                    min_level=Decimal(rng.choice([0, 2, 4])),
                    additional=additional,
                    drop_after_seconds=rng.choice([60, 300, 1800, 3600]) if additional else None,
                )
            )
        if len(chunk) >= 5000:
            ItemSkill.objects.bulk_create(chunk)
            written += len(chunk)
            chunk = []
    ItemSkill.objects.bulk_create(chunk)
    written += len(chunk)
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE routing_itemskill, routing_agentskill")
    return len(agent_rows), written


def set_requirements_aside() -> None:
    """No item requires anything (the rows wait in ``bench_itemskill``), for a measurement of
    the same world without skills."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS bench_itemskill AS TABLE routing_itemskill WITH NO DATA"
        )
        cur.execute("INSERT INTO bench_itemskill SELECT * FROM routing_itemskill")
        cur.execute("DELETE FROM routing_itemskill")
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE routing_itemskill")


def put_requirements_back() -> None:
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("INSERT INTO routing_itemskill SELECT * FROM bench_itemskill")
        cur.execute("DELETE FROM bench_itemskill")
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE routing_itemskill")


def reset_routing() -> None:
    """Back to "nobody holds anything, everything not canceled waits" (before each measurement)."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("DELETE FROM routing_agentwork")
        cur.execute(
            "UPDATE routing_workitem SET status = 'waiting' WHERE status IN ('offered', 'assigned')"
        )
        cur.execute(
            "UPDATE presence_agent SET used_capacity = 0, open_count = 0, last_assigned_at = NULL "
            "WHERE used_capacity <> 0 OR open_count <> 0 OR last_assigned_at IS NOT NULL"
        )
    vacuum()


def cancel_backlog() -> None:
    """No waiting work at all (the latency run starts from an empty line)."""
    with connection.cursor() as cur:
        cur.execute("UPDATE routing_workitem SET status = 'canceled' WHERE status = 'waiting'")
    vacuum()


def vacuum() -> None:
    # Resets leave dead tuples in the waiting index; without a vacuum every run would scan more
    # of them than the one before, and the figures would drift with the number of runs.
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE routing_workitem, routing_agentwork, presence_agent")


def full_agents() -> tuple[int, int]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FILTER (WHERE used_capacity >= capacity), count(*) FROM presence_agent"
        )
        full, total = cur.fetchone()
    return full, total


def live_assignments() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM routing_agentwork WHERE state IN ('pushed', 'opened')")
        return cur.fetchone()[0]
