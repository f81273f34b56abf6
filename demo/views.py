"""Pages of the embedded demo: what to try, the traffic simulator switch, and a shop page of a
customer's website with the web-chat widget embedded."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from demo import simulator
from messaging.models import AccountKind, ChannelAccount
from omnirouter import roles


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
        "demo/demo.html",
        {
            "embedded": embedded,
            "simulator": simulator.status(),
            "can_drive": roles.is_supervisor(request.user),
        },
    )


def demo_shop(request: HttpRequest) -> HttpResponse:
    """A shop page of a customer's website, with the web-chat widget embedded by one tag."""
    accounts = ChannelAccount.objects.filter(kind=AccountKind.WEBCHAT, active=True)
    key = request.GET.get("account")
    account = (accounts.filter(public_key=key) if key else accounts).order_by("pk").first()
    return render(request, "demo/shop.html", {"account": account})
