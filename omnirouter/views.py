"""Platform pages: liveness, readiness and metrics (see ``omnirouter.health``, ``.monitoring``), and
the 404 answer of paths no URL matches."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from omnirouter.health import ReadinessView, healthz
from omnirouter.monitoring import metrics_view

__all__ = ["ReadinessView", "healthz", "metrics_view", "not_found"]


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 for paths no URL matches: JSON under /api/ (what API clients parse), the HTML page
    elsewhere. (Views that find no record answer their own 404.)"""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return defaults.page_not_found(request, exception)
