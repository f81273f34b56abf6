"""Roles: admin, supervisor, agent, intake client.

- admin: a superuser, or a member of the ``admin`` group.
- supervisor: a member of the ``supervisor`` group; sees the queues they supervise (admins see all).
- agent: a user with an agent record (``user.agent``).
- intake client: a member of the ``intake`` group (systems that create work items).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

ADMIN = "admin"
SUPERVISOR = "supervisor"
INTAKE = "intake"


def _in_group(user: Any, name: str) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    cache = getattr(user, "_omnirouter_groups", None)
    if cache is None:
        cache = set(user.groups.values_list("name", flat=True))
        user._omnirouter_groups = cache
    return name in cache


def is_admin(user: Any) -> bool:
    return bool(getattr(user, "is_superuser", False)) or _in_group(user, ADMIN)


def is_supervisor(user: Any) -> bool:
    return is_admin(user) or _in_group(user, SUPERVISOR)


def is_intake(user: Any) -> bool:
    return is_admin(user) or _in_group(user, INTAKE)


def agent_of(user: Any) -> Any | None:
    """The user's agent record, or None."""
    if not getattr(user, "is_authenticated", False):
        return None
    from presence.models import Agent

    try:
        return user.agent
    except Agent.DoesNotExist:
        return None


def supervised_queues(user: Any) -> QuerySet[Any]:
    """Queues the user may watch and act on: all for admins, their own for supervisors."""
    from routing.models import Queue

    if is_admin(user):
        return Queue.objects.all()
    if _in_group(user, SUPERVISOR):
        return Queue.objects.filter(supervisors=user)
    return Queue.objects.none()
