"""Assistance data: fitted model versions, the predictions and suggestions shown, agents' feedback,
the admin's settings (which payload fields may be learned from) and customers left out of learning.

A fitted model is stored as bytes with an HMAC of them keyed by ``SECRET_KEY`` (``assist.blob``):
only what this installation wrote is ever unpickled.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class VersionStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    CANDIDATE = "candidate", _("Trained, not better than the active one")
    RETIRED = "retired", _("Retired")
    FAILED = "failed", _("Training failed")


class ModelVersion(models.Model):
    """One training run: its window, data, held-out metrics and (unless it failed) the fitted
    pipeline. At most one version is active."""

    targets = models.JSONField(_("targets"), default=list)
    created_at = models.DateTimeField(_("created"))
    window_start = models.DateTimeField(_("training window start"), null=True, blank=True)
    window_end = models.DateTimeField(_("training window end"), null=True, blank=True)
    train_size = models.PositiveIntegerField(_("training items"), default=0)
    holdout_size = models.PositiveIntegerField(_("held-out items"), default=0)
    metrics = models.JSONField(_("metrics"), default=dict, blank=True)
    blob = models.BinaryField(_("fitted model"), null=True, blank=True, editable=False)
    blob_hmac = models.CharField(max_length=64, blank=True, default="", editable=False)
    blob_bytes = models.PositiveIntegerField(_("size (bytes)"), default=0)
    status = models.CharField(
        _("status"), max_length=10, choices=VersionStatus.choices, default=VersionStatus.CANDIDATE
    )
    is_active = models.BooleanField(_("active"), default=False)
    activated_at = models.DateTimeField(_("activated"), null=True, blank=True)
    activated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("activated by"),
    )
    decision = models.TextField(_("decision"), blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("model version")
        verbose_name_plural = _("model versions")
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="modelversion_one_active"
            ),
            models.CheckConstraint(
                condition=Q(is_active=False) | Q(status="active"),
                name="modelversion_active_has_status",
            ),
        ]

    def __str__(self) -> str:
        return _("Model version %(id)s") % {"id": self.pk}


class Prediction(models.Model):
    """What the model said about an item, with why (the item's terms that weighed most)."""

    item = models.ForeignKey(
        "routing.WorkItem", on_delete=models.CASCADE, related_name="+", verbose_name=_("item")
    )
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="predictions")
    target = models.CharField(_("target"), max_length=20)
    label = models.CharField(_("label"), max_length=200)
    confidence = models.FloatField(_("confidence"))
    top_terms = models.JSONField(_("top terms"), default=list)
    created_at = models.DateTimeField(_("created"))

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("prediction")
        verbose_name_plural = _("predictions")
        indexes = [models.Index(fields=["item", "target", "-created_at"], name="prediction_item")]

    def __str__(self) -> str:
        return f"{self.target}={self.label} ({self.confidence:.2f})"


class FeedbackKind(models.TextChoices):
    USED = "used", _("Used")
    NOT_HELPFUL = "not_helpful", _("Not helpful")
    CORRECTED = "corrected", _("Corrected")
    ACCEPTED = "accepted", _("Accepted")


class Feedback(models.Model):
    """An agent's answer to a prediction, a prefilled field or a suggested past item."""

    item = models.ForeignKey("routing.WorkItem", on_delete=models.CASCADE, related_name="+")
    prediction = models.ForeignKey(
        Prediction, on_delete=models.CASCADE, null=True, blank=True, related_name="feedback"
    )
    # A prefilled field ("order_number") or "suggestion" with the suggested item in suggested_item.
    field = models.CharField(_("field"), max_length=40)
    suggested_item = models.ForeignKey(
        "routing.WorkItem", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    agent = models.ForeignKey(
        "presence.Agent", on_delete=models.SET_NULL, null=True, related_name="+"
    )
    kind = models.CharField(_("feedback"), max_length=12, choices=FeedbackKind.choices)
    suggested_value = models.CharField(_("suggested"), max_length=200, blank=True, default="")
    corrected_value = models.CharField(_("corrected to"), max_length=200, blank=True, default="")
    at = models.DateTimeField(_("at"))

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = _("feedback")
        verbose_name_plural = _("feedback")
        constraints = [
            models.CheckConstraint(
                condition=~Q(kind="corrected") | ~Q(corrected_value=""),
                name="feedback_correction_has_value",
            )
        ]

    def __str__(self) -> str:
        return f"{self.field}: {self.kind}"


class AssistConfiguration(models.Model):
    """The admin's settings for learning (one row)."""

    payload_fields = models.JSONField(
        _("payload fields learned from"),
        default=list,
        blank=True,
        help_text=_(
            "Payload fields whose values training may use, as a list (for example "
            '["product", "language"]). Leave out fields that hold personal data.'
        ),
    )
    confidence_threshold = models.DecimalField(
        _("confidence threshold"),
        max_digits=3,
        decimal_places=2,
        default=Decimal("0.80"),
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text=_("Below this, a prediction is not offered to routing rules (rules decide)."),
    )

    class Meta:
        verbose_name = _("assistance settings")
        verbose_name_plural = _("assistance settings")

    def __str__(self) -> str:
        return str(_("Assistance settings"))


class ExcludedCustomer(models.Model):
    """A customer whose items no training uses from now on (an erasure or objection request).
    The product has no erasure feature yet: this list is what one would write to."""

    customer = models.OneToOneField(
        "messaging.Customer", on_delete=models.CASCADE, related_name="+"
    )
    excluded_at = models.DateTimeField(_("excluded"))
    excluded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = _("customer excluded from learning")
        verbose_name_plural = _("customers excluded from learning")

    def __str__(self) -> str:
        return str(self.customer)
