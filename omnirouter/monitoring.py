"""The /metrics page: every series this process counts (``omnirouter.metrics``) and the ones read
from the database when scraped. It reads routing's tables, so it sits with the wiring, above the
apps, while the counters it shows stay in the platform layer every app may use.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Min, Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from omnirouter.roles import is_admin
from routing.models import AgentWork, AgentWorkState, Queue, WorkItemStatus


class DatabaseCollector(Collector):
    """Series read from the database when scraped: one grouped query, one indexed aggregate."""

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Without this, registering would run collect(): a query while the app loads.
        yield GaugeMetricFamily("omnirouter_queue_waiting_items", "", labels=["queue"])
        yield GaugeMetricFamily("omnirouter_offer_overdue_seconds", "")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        waiting = GaugeMetricFamily(
            "omnirouter_queue_waiting_items", "Work items waiting in each queue.", labels=["queue"]
        )
        rows = Queue.objects.annotate(
            n=Count("work_items", filter=Q(work_items__status=WorkItemStatus.WAITING))
        ).values_list("name", "n")
        for name, n in rows:
            waiting.add_metric([name], n)
        yield waiting

        oldest = AgentWork.objects.filter(state=AgentWorkState.PUSHED).aggregate(
            at=Min("expires_at")
        )["at"]
        overdue = GaugeMetricFamily(
            "omnirouter_offer_overdue_seconds",
            "How far the oldest pushed offer is past its deadline (0: none is); the sweep "
            "should keep this under its interval.",
        )
        overdue.add_metric([], max(0.0, (timezone.now() - oldest).total_seconds()) if oldest else 0)
        yield overdue


REGISTRY.register(DatabaseCollector())


def _authorized(request: HttpRequest) -> bool:
    token = settings.METRICS_BEARER_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header.removeprefix("Bearer ").encode(), token.encode())
    return is_admin(request.user)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format. Admins (session) or ``Authorization: Bearer METRICS_BEARER_TOKEN``:
    the series name queues."""
    if not _authorized(request):
        response = HttpResponse("Forbidden: admins or the metrics bearer token only.\n", status=403)
        response["Content-Type"] = "text/plain; charset=utf-8"
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
