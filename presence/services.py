"""Presence services: creating agents. Status changes live in ``routing.services.set_presence``
because they move offers; this module only deals with who the agents are."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction
from django.utils.translation import gettext as _

from omnirouter.errors import DomainError
from presence.models import Agent, PresenceConfiguration
from routing import services as routing_services
from routing.dispatch import request_routing
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


def create_agent_for_user(
    *, user: User, presence_config: PresenceConfiguration, queues: Iterable[Queue] = ()
) -> Agent:
    """Make an existing user an agent (the admin's "add agent"), with queue memberships.

    Starts offline, with the configuration's capacity. Refused if the user is an agent already.
    """
    with transaction.atomic():
        if Agent.objects.filter(user=user).exists():
            raise DomainError(_("%(user)s is already an agent.") % {"user": user}, "exists")
        agent = Agent.objects.create(
            user=user,
            presence_config=presence_config,
            configured_capacity=presence_config.capacity,
            capacity=presence_config.capacity,
        )
        QueueMembership.objects.bulk_create(QueueMembership(queue=q, agent=agent) for q in queues)
    return agent


def update_agent(
    *,
    agent: Agent,
    presence_config: PresenceConfiguration | None = None,
    queues: Iterable[Queue] | None = None,
    user_changes: Mapping[str, Any] | None = None,
) -> Agent:
    """Edit an agent: their user's names and e-mail, presence configuration, queues.

    A new presence configuration takes effect at once: capacity follows it (never below what the
    agent holds) and a routing pass is requested; so do new queues.
    """
    with transaction.atomic():
        if user_changes:
            user = agent.user
            for name, value in user_changes.items():
                setattr(user, name, value)
            user.save(update_fields=list(user_changes))
        if presence_config is not None and presence_config.pk != agent.presence_config_id:
            # The agent row is locked like every routing write locks it, so a pass never reads
            # the old capacity with the new configuration.
            Agent.objects.select_for_update().filter(pk=agent.pk).update(
                presence_config=presence_config
            )
            routing_services.apply_presence_config(agent_ids=[agent.pk])
        if queues is not None:
            set_queue_membership(agent=agent, queues=queues)
    agent.refresh_from_db()
    return agent


def update_presence_config(
    *,
    config: PresenceConfiguration,
    changes: Mapping[str, Any],
    m2m: Mapping[str, Iterable[Any]] | None = None,
) -> PresenceConfiguration:
    """Edit a presence configuration; it applies to its agents at once.

    A new capacity becomes each agent's capacity (never below what they hold); auto-accept,
    console and decline settings are read on the next offer. A routing pass is requested.
    """
    with transaction.atomic():
        routing_services.save_configuration(instance=config, changes=changes, m2m=m2m)
        routing_services.apply_presence_config(config_id=config.pk)
        request_routing()
    return config
