"""Factories for test data. Configuration objects come from factory_boy; agents and work items are
made through the services, as users make them."""

from __future__ import annotations

from collections.abc import Iterable

import factory

from presence.models import Agent, PresenceConfiguration, PresenceStatus
from presence.services import create_agent
from routing import services
from routing.models import Queue, RoutingConfiguration, ServiceChannel, WorkItem


class ServiceChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ServiceChannel
        django_get_or_create = ("key",)

    key = factory.Sequence(lambda n: f"channel{n}")
    label = factory.LazyAttribute(lambda o: o.key.title())
    default_size_units = 1


class RoutingConfigurationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RoutingConfiguration

    name = factory.Sequence(lambda n: f"config {n}")
    routing_priority = 1
    routing_model = "least_active"
    push_timeout_seconds = 30


class QueueFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Queue

    name = factory.Sequence(lambda n: f"queue {n}")
    routing_config = factory.SubFactory(RoutingConfigurationFactory)


class PresenceConfigurationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PresenceConfiguration

    name = factory.Sequence(lambda n: f"presence {n}")
    capacity = 10
    console_required = False


def make_status(
    name: str, channels: Iterable[ServiceChannel] = (), online: bool = True
) -> PresenceStatus:
    status, _ = PresenceStatus.objects.get_or_create(name=name, defaults={"is_online": online})
    status.channels.set(list(channels))
    return status


def make_agent(
    username: str,
    *,
    queues: Iterable[Queue] = (),
    config: PresenceConfiguration | None = None,
    status: PresenceStatus | None = None,
    password: str = "agent-pass-123",
) -> Agent:
    agent = create_agent(
        username=username,
        password=password,
        presence_config=config or PresenceConfigurationFactory(),
        queues=list(queues),
    )
    if status is not None:
        services.set_presence(agent=agent, status=status)
        agent.refresh_from_db()
    return agent


def enqueue(queue: Queue, channel: ServiceChannel, subject: str = "item", **kwargs) -> WorkItem:
    return services.enqueue_work(queue=queue, channel=channel, subject=subject, **kwargs)
