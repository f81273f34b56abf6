"""Roles: admin, supervisor, agent, intake client.

- admin: a superuser, or a member of the ``admin`` group.
- supervisor: a member of the ``supervisor`` group; sees the queues they supervise (admins see all;
  ``routing.selectors.supervised_queues``).
- agent: a user with an agent record (``user.agent``).
- intake client: a member of the ``intake`` group (systems that create work items).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

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


def signed_in(user: User | AnonymousUser) -> User:
    """``user`` as the signed-in user that the view's permission or login check demanded: a view
    that forgot the check answers 403 rather than handing an anonymous user to a service."""
    if not user.is_authenticated:
        raise PermissionDenied
    return user


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
