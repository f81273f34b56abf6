"""Demo page of the embedded run: what to try, and the traffic simulator switch."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from routing import roles, simulator


@login_required
@require_http_methods(["GET", "POST"])
def demo(request: HttpRequest) -> HttpResponse:
    """GET shows the demo guide; POST (supervisors/admins) switches the simulator."""
    embedded = settings.ROUTING_MODE == "embedded"
    if request.method == "POST":
        if not roles.is_supervisor(request.user):
            raise PermissionDenied(_("Only supervisors and admins can drive the simulator."))
        if not embedded:
            return HttpResponse(_("The simulator runs only in the embedded demo."), status=409)
        action = request.POST.get("action")
        if action == "start":
            try:
                interval = float(request.POST.get("interval") or 4)
            except ValueError:
                return HttpResponse(_("Interval must be a number of seconds."), status=400)
            simulator.start(interval)
        elif action == "stop":
            simulator.stop()
        else:
            return HttpResponse(_("Unknown action."), status=400)
        return redirect("demo")
    return render(
        request,
        "routing/demo.html",
        {
            "embedded": embedded,
            "simulator": simulator.status(),
            "can_drive": roles.is_supervisor(request.user),
        },
    )


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness and readiness for load balancers and compose: the database answers."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok", content_type="text/plain")
