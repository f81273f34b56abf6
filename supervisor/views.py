"""The supervisor dashboard page: rendered with a first snapshot, then kept live over
``/ws/supervisor/`` by static/js/supervisor.js (no reload, no build step)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from omnirouter import roles
from supervisor.selectors import build_snapshot, presence_choices, scope_for, skill_choices


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    if not roles.is_supervisor(request.user):
        raise PermissionDenied(_("Only supervisors and administrators can see the dashboard."))
    snapshot = build_snapshot(scope_for(request.user), timezone.now())
    return render(
        request,
        "supervisor/dashboard.html",
        {
            "snapshot": snapshot,
            "statuses": presence_choices(),
            "skills": skill_choices(),
            "labels": _labels(),
            "config": {"resyncSeconds": settings.REALTIME_RESYNC_SECONDS},
        },
    )


def _labels() -> dict[str, str]:
    """Words the page's script writes itself, translated here (one catalogue, no JS domain)."""
    return {
        "live": _("Live"),
        "connecting": _("Connecting…"),
        "reconnecting": _("Connection lost: reconnecting…"),
        "signed_out": _("Signed out: log in again to see live figures."),
        "forbidden": _("Your role does not allow the live dashboard."),
        "updated": _("Updated %(time)s"),
        "pushed": _("Offered"),
        "opened": _("Assigned"),
        "offline": _("Offline"),
        "no_status": _("No status"),
        "room": _("Room for more"),
        "full": _("Full"),
        "no_live_console": _("No live console"),
        "none": _("None"),
        "no_work": _("No live offers or assignments."),
        "no_waiting": _("Nothing waiting."),
        "no_agents": _("No agents match."),
        "no_queues": _("You do not supervise any queue yet."),
        "goal": _("goal %(goal)s%%"),
        "met": _("Goal met"),
        "missed": _("Below goal"),
        "no_data": _("No data yet"),
        "sl_none": _("Nothing answered yet today"),
        "move": _("Move"),
        "push": _("Push"),
        "set_status": _("Set"),
        "move_to": _("Move item %(item)s to queue"),
        "push_to": _("Push item %(item)s to agent"),
        "status_for": _("New status for %(agent)s"),
        "choose_queue": _("Queue…"),
        "push_open": _("Push…"),
        "push_title": _("Push #%(item)s %(subject)s to an agent"),
        "push_agent": _("Push to %(agent)s"),
        "push_loading": _("Loading the queue's members…"),
        "push_nobody": _("The queue has no members."),
        "done_move": _("Item %(item)s moved to %(queue)s."),
        "done_push": _("Item %(item)s offered to %(agent)s."),
        "done_status": _("%(agent)s is now %(status)s."),
        "failed": _("Could not do that: %(reason)s"),
        "more_work": _("Showing %(shown)s of %(total)s, longest in their state first."),
        "chart_backlog": _("Items waiting"),
        "chart_longest": _("Longest wait (s)"),
        "chart_sl": _("Service level today (%)"),
        "chart_summary": _("%(metric)s, %(queue)s: now %(last)s, highest %(max)s since %(since)s."),
        "sort_by": _("Sort by %(column)s"),
        "items_open": _("%(count)s open"),
        "no_backlog": _("No waiting item needs a skill."),
        "edit_skills": _("Edit skills"),
        "edit_skills_of": _("Edit skills of %(agent)s"),
        "skills_title": _("Skills of %(agent)s"),
        "no_skills": _("No skills yet."),
        "level_of": _("Level of %(skill)s"),
        "save": _("Save"),
        "remove": _("Remove"),
        "remove_skill": _("Remove %(skill)s"),
        "done_skill": _("%(agent)s: %(skill)s at level %(level)s."),
        "done_remove_skill": _("%(agent)s no longer has %(skill)s."),
        # An exception rule fired (the socket's alert frame); count is the number of items.
        "alert_one": _("%(time)s · %(queue)s: rule “%(rule)s” fired for 1 item (%(trigger)s)."),
        "alert_many": _(
            "%(time)s · %(queue)s: rule “%(rule)s” fired for %(count)s items (%(trigger)s)."
        ),
        "trigger_waited": _("waited too long"),
        "trigger_queue_length": _("queue too long"),
        "trigger_no_agent": _("no agent online"),
    }
