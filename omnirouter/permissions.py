"""API permissions by role (see ``omnirouter.roles``), each refusing with a message that says why.

Anonymous requests are refused by DRF before these messages matter: 401 with a
``WWW-Authenticate: Token`` challenge, because token authentication comes first in settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import SAFE_METHODS, BasePermission
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


class IsAgentOrSupervisor(_RolePermission):
    """Reading agents' skills: an agent their own, supervisors their queues' agents'."""

    message = _("Only agents, supervisors and administrators may read agents' skills.")

    @staticmethod
    def has_role(user: Any) -> bool:
        return roles.agent_of(user) is not None or roles.is_supervisor(user)


class IsAgent(_RolePermission):
    message = _("Only agents may do this: your user has no agent record.")
    has_role = staticmethod(lambda user: roles.agent_of(user) is not None)


class _ReadForRolesWriteForAdmin(BasePermission):
    """Reads for the roles ``may_read`` names, writes for administrators only."""

    may_read: Callable[[Any], bool]
    message = _("Only administrators may do this.")

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if roles.is_admin(user):
            return True
        if request.method in SAFE_METHODS:
            return type(self).may_read(user)
        return False


class AdminWritesAnyRoleReads(_ReadForRolesWriteForAdmin):
    """Skills, queue and channel names: every role reads (agents transfer to them, intake
    clients post to them), administrators change them."""

    may_read = staticmethod(
        lambda user: (
            roles.agent_of(user) is not None or roles.is_intake(user) or roles.is_supervisor(user)
        )
    )


class AdminWritesStaffReads(_ReadForRolesWriteForAdmin):
    """Decline reasons: agents (who decline) and supervisors read, administrators change."""

    may_read = staticmethod(
        lambda user: roles.agent_of(user) is not None or roles.is_supervisor(user)
    )
