"""API permissions by role (see ``omnirouter.roles``), each refusing with a message that says why.

Anonymous requests are refused by DRF before these messages matter: 401 with a
``WWW-Authenticate: Token`` challenge, because token authentication comes first in settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from omnirouter import roles


class _RolePermission(BasePermission):
    """Grants access to authenticated users for whom ``has_role`` holds."""

    has_role: Callable[[Any], bool]

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and type(self).has_role(user))


class IsAdmin(_RolePermission):
    message = _("Only administrators may do this.")
    has_role = staticmethod(roles.is_admin)


class IsSupervisor(_RolePermission):
    """Supervisors and admins; which queues they see is the view's business."""

    message = _("Only supervisors and administrators may do this.")
    has_role = staticmethod(roles.is_supervisor)


class IsIntake(_RolePermission):
    message = _("Only intake clients and administrators may create work items.")
    has_role = staticmethod(roles.is_intake)


class IsIntakeOrSupervisor(_RolePermission):
    """Reading and canceling items: intake clients (their own), supervisors (their queues)."""

    message = _("Only intake clients, supervisors and administrators may read work items.")

    @staticmethod
    def has_role(user: Any) -> bool:
        return roles.is_intake(user) or roles.is_supervisor(user)


class IsAgent(_RolePermission):
    message = _("Only agents may do this: your user has no agent record.")
    has_role = staticmethod(lambda user: roles.agent_of(user) is not None)
