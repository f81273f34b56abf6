"""Admin for the supervisor's trend samples: read-only (only the sampler writes them)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from supervisor.models import QueueSample


@admin.register(QueueSample)
class QueueSampleAdmin(admin.ModelAdmin):
    list_display = (
        "at",
        "queue",
        "waiting",
        "longest_wait_seconds",
        "answered_today",
        "service_level",
    )
    list_filter = ("queue",)
    date_hierarchy = "at"
    list_select_related = ("queue",)
    readonly_fields = (
        "queue",
        "at",
        "waiting",
        "longest_wait_seconds",
        "answered_today",
        "answered_within_target_today",
        "abandoned_after_target_today",
    )

    @admin.display(description=_("service level today (%)"))
    def service_level(self, sample: QueueSample) -> Any:
        return sample.service_level_percent

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
