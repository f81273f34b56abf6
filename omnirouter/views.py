"""Platform pages: liveness, readiness and metrics (see ``omnirouter.health``, ``.metrics``)."""

from omnirouter.health import ReadinessView, healthz
from omnirouter.metrics import metrics_view

__all__ = ["ReadinessView", "healthz", "metrics_view"]
