"""Presence services: creating agents. Status changes live in ``routing.services.set_presence``
because they move offers; this module only deals with who the agents are."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db import transaction

from presence.models import Agent, PresenceConfiguration
from routing.models import Queue, QueueMembership


def create_agent(
    *,
    username: str,
    password: str | None,
    presence_config: PresenceConfiguration,
    queues: Iterable[Queue] = (),
    first_name: str = "",
    last_name: str = "",
    email: str = "",
) -> Agent:
    """Create a user and their agent record, with queue memberships. Starts offline."""
    user_model = get_user_model()
    with transaction.atomic():
        user = user_model.objects.create_user(
            username=username,
            password=password,
            first_name=first_name,
            last_name=last_name,
            email=email,
        )
        agent = Agent.objects.create(
            user=user,
            presence_config=presence_config,
            configured_capacity=presence_config.capacity,
            capacity=presence_config.capacity,
        )
        QueueMembership.objects.bulk_create(QueueMembership(queue=q, agent=agent) for q in queues)
    return agent


def set_queue_membership(*, agent: Agent, queues: Iterable[Queue]) -> None:
    """Make ``queues`` exactly the agent's queues."""
    wanted = {q.pk for q in queues}
    with transaction.atomic():
        QueueMembership.objects.filter(agent=agent).exclude(queue_id__in=wanted).delete()
        have = set(QueueMembership.objects.filter(agent=agent).values_list("queue_id", flat=True))
        QueueMembership.objects.bulk_create(
            QueueMembership(queue_id=q, agent=agent) for q in sorted(wanted - have)
        )
    from routing.dispatch import request_routing

    request_routing()
