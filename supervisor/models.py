"""Supervisor data: periodic samples of each queue, the source of the dashboard's trend charts.

Why samples rather than recomputing the past from agent work timestamps: how many items waited at
a past moment cannot be read back exactly from the rows as they are now (items move between
queues, go back in line after a decline, start a new wait after a transfer), and recomputing
each point would scan history once per point. A sample is what the dashboard showed at that
minute, costs one small row per queue per minute, and reading a chart is an index range scan.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class QueueSample(models.Model):
    """One queue's backlog, longest wait and service level at one moment (about every minute)."""

    queue = models.ForeignKey(
        "routing.Queue", on_delete=models.CASCADE, related_name="+", verbose_name=_("queue")
    )
    at = models.DateTimeField(_("at"))
    waiting = models.PositiveIntegerField(_("waiting"))
    longest_wait_seconds = models.PositiveIntegerField(_("longest wait (s)"))
    # Today's figures so far (TIME_ZONE's day) at the moment of the sample. Kept as counts so a
    # chart can recompute the percentage over any grouping without rounding errors piling up.
    answered_today = models.PositiveIntegerField(_("answered today"))
    answered_within_target_today = models.PositiveIntegerField(_("answered within target today"))
    abandoned_after_target_today = models.PositiveIntegerField(_("abandoned after target today"))

    class Meta:
        ordering = ["queue", "at"]
        verbose_name = _("queue sample")
        verbose_name_plural = _("queue samples")
        indexes = [
            models.Index(fields=["queue", "at"], name="queuesample_queue_at"),
            models.Index(fields=["at"], name="queuesample_at"),
        ]

    def __str__(self) -> str:
        return f"{self.queue_id} @ {self.at:%Y-%m-%d %H:%M}"

    @property
    def service_level_percent(self) -> float | None:
        offered = self.answered_today + self.abandoned_after_target_today
        if not offered:
            return None
        return round(100 * self.answered_within_target_today / offered, 1)
