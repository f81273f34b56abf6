"""Template context shared by every page: which workspaces the signed-in user may open."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from omnirouter import roles


def workspaces_of(user: Any) -> list[dict[str, Any]]:
    """Links to the places ``user`` may work in, in navigation order."""
    if not getattr(user, "is_authenticated", False):
        return []
    links = []
    if roles.agent_of(user) is not None:
        links.append({"key": "console", "url": reverse("console"), "label": _("Console")})
    if roles.is_supervisor(user):
        links.append({"key": "supervisor", "url": "/supervisor/", "label": _("Supervisor")})
    if user.is_staff and roles.is_admin(user):
        links.append({"key": "admin", "url": reverse("admin:index"), "label": _("Admin")})
    links.append({"key": "api", "url": "/api/docs/", "label": _("API")})
    return links


def workspaces(request: HttpRequest) -> dict[str, Any]:
    return {"workspaces": workspaces_of(getattr(request, "user", None))}
