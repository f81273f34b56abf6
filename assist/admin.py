"""Assistance admin: model versions with their metrics, activate and roll back (logged with who),
training on demand, the settings, feedback and exclusions."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from assist import services, tasks
from assist.models import (
    AssistConfiguration,
    ExcludedCustomer,
    Feedback,
    ModelVersion,
    Prediction,
)
from omnirouter.errors import DomainError


def _queue_figure(version: ModelVersion, key: str) -> Any:
    queue = (version.metrics or {}).get("targets", {}).get("queue", {})
    value = queue.get("model", {}).get(key) if key in ("accuracy", "macro_f1") else queue.get(key)
    return "-" if value is None else value


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "created_at",
        "status",
        "is_active",
        "train_size",
        "holdout_size",
        "queue_macro_f1",
        "queue_accuracy",
        "queue_ece",
        "activated_by",
        "activated_at",
    )
    list_filter = ("status", "is_active")
    # The fitted model (megabytes of bytes) is never drawn; its size and signature are.
    readonly_fields = [
        f.name for f in ModelVersion._meta.fields if f.name not in ("blob", "metrics")
    ] + ["metrics_pretty"]
    exclude = ("metrics", "blob")
    actions = ["activate", "roll_back", "train_now"]

    @admin.display(description=_("queue macro-F1"))
    def queue_macro_f1(self, obj: ModelVersion) -> Any:
        return _queue_figure(obj, "macro_f1")

    @admin.display(description=_("queue accuracy"))
    def queue_accuracy(self, obj: ModelVersion) -> Any:
        return _queue_figure(obj, "accuracy")

    @admin.display(description=_("queue ECE"))
    def queue_ece(self, obj: ModelVersion) -> Any:
        return _queue_figure(obj, "ece")

    @admin.display(description=_("metrics"))
    def metrics_pretty(self, obj: ModelVersion) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.metrics, indent=2, ensure_ascii=False))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description=_("Activate the selected version"))
    def activate(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        if queryset.count() != 1:
            self.message_user(request, _("Select exactly one version."), messages.ERROR)
            return
        version = queryset.get()
        try:
            services.activate_version(version_id=version.pk, by=request.user)
        except DomainError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, _("Version %(id)s is active.") % {"id": version.pk})

    @admin.action(description=_("Roll back to the previously active version"))
    def roll_back(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        try:
            version = services.roll_back(by=request.user)
        except DomainError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, _("Version %(id)s is active again.") % {"id": version.pk})

    @admin.action(description=_("Train a new version now"))
    def train_now(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        if tasks.request_training(request.user.pk):
            self.message_user(request, _("Training started; the new version appears here."))
        else:
            self.message_user(request, _("No worker runs training in this mode."), messages.ERROR)


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ("item", "version", "target", "label", "confidence", "created_at")
    list_filter = ("target",)
    readonly_fields = [f.name for f in Prediction._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ("item", "field", "kind", "suggested_value", "corrected_value", "agent", "at")
    list_filter = ("kind", "field")
    readonly_fields = [f.name for f in Feedback._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(AssistConfiguration)
class AssistConfigurationAdmin(admin.ModelAdmin):
    list_display = ("__str__", "payload_fields", "confidence_threshold")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not AssistConfiguration.objects.exists()


@admin.register(ExcludedCustomer)
class ExcludedCustomerAdmin(admin.ModelAdmin):
    list_display = ("customer", "excluded_at", "excluded_by")
    raw_id_fields = ("customer",)
    readonly_fields = ("excluded_at", "excluded_by")

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        services.exclude_customer(customer_id=obj.customer_id, by=request.user)
