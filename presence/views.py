"""Pages of the presence app: the landing page that sends each role where it works, the console."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _

from omnirouter import roles
from presence.context_processors import workspaces_of


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Agents go to the console, admins to the admin site, supervisors to their dashboard.

    Users with none of those roles (an intake client logging in by hand) get a page saying what
    they may use instead of a 403 they cannot act on.
    """
    user = request.user
    if roles.agent_of(user) is not None:
        return redirect("console")
    if user.is_staff and roles.is_admin(user):
        return redirect("admin:index")
    if roles.is_supervisor(user):
        return redirect("/supervisor/")
    return render(request, "presence/home.html", {"workspaces": workspaces_of(user)})


@login_required
def console(request: HttpRequest) -> HttpResponse:
    """The agent console: a shell the WebSocket fills with the agent's state and pushes."""
    agent = roles.agent_of(request.user)
    if agent is None:
        raise PermissionDenied(_("The console is for agents only."))
    config = {
        "wsPath": "/ws/agent/",
        "heartbeatSeconds": settings.CONSOLE_HEARTBEAT_SECONDS,
        "resyncSeconds": settings.REALTIME_RESYNC_SECONDS,
        "loginUrl": f"{reverse('login')}?next={reverse('console')}",
    }
    return render(request, "presence/console.html", {"agent": agent, "console_config": config})
