"""Roles: admin, supervisor, agent, intake client.

- admin: a superuser, or a member of the ``admin`` group.
- supervisor: a member of the ``supervisor`` group; sees the queues they supervise (admins see all;
  ``routing.selectors.supervised_queues``).
- agent: a user with an agent record (``user.agent``).
- intake client: a member of the ``intake`` group (systems that create work items).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist

ADMIN = "admin"
SUPERVISOR = "supervisor"
INTAKE = "intake"


def in_group(user: Any, name: str) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    cache = getattr(user, "_omnirouter_groups", None)
    if cache is None:
        cache = set(user.groups.values_list("name", flat=True))
        user._omnirouter_groups = cache
    return name in cache


def is_admin(user: Any) -> bool:
    return bool(getattr(user, "is_superuser", False)) or in_group(user, ADMIN)


def is_supervisor(user: Any) -> bool:
    return is_admin(user) or in_group(user, SUPERVISOR)


def is_intake(user: Any) -> bool:
    return is_admin(user) or in_group(user, INTAKE)


def agent_of(user: Any) -> Any | None:
    """The user's agent record, or None."""
    if not getattr(user, "is_authenticated", False):
        return None
    try:
        return user.agent
    except ObjectDoesNotExist:
        return None
