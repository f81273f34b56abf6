"""Presence: what agents say about themselves, their configurations and their live state."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext


class PresenceStatus(models.Model):
    """E.g. "Available - Chat" (online for chat), "Busy" (online, no channel), "Offline"."""

    name = models.CharField(_("name"), max_length=80, unique=True)
    is_online = models.BooleanField(_("online"), default=True)
    channels = models.ManyToManyField(
        "routing.ServiceChannel",
        related_name="presence_statuses",
        blank=True,
        verbose_name=_("available for channels"),
    )

    class Meta:
        ordering = ["-is_online", "name"]
        verbose_name = _("presence status")
        verbose_name_plural = _("presence statuses")

    def __str__(self) -> str:
        return self.name

    def delete_blockers(self) -> list[str]:
        """Agents' status is SET_NULL; deleting it under them would take them offline silently,
        with their offers still held (``omnirouter.configuration.delete_configuration``)."""
        count = self.agents.count()
        if not count:
            return []
        return [
            ngettext("%(count)d agent in this status", "%(count)d agents in this status", count)
            % {"count": count}
        ]


class DeclineReason(models.Model):
    label = models.CharField(_("label"), max_length=120, unique=True)
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["label"]
        verbose_name = _("decline reason")
        verbose_name_plural = _("decline reasons")

    def __str__(self) -> str:
        return self.label

    def delete_blockers(self) -> list[str]:
        """Configurations list it (a many-to-many: deleting would drop it from them silently,
        and agents could no longer give it). Deactivate it instead."""
        names = list(
            PresenceConfiguration.objects.filter(decline_reasons=self)
            .order_by("name")
            .values_list("name", flat=True)
        )
        if not names:
            return []
        return [
            ngettext(
                "presence configuration %(names)s",
                "presence configurations %(names)s",
                len(names),
            )
            % {"names": ", ".join(names)}
        ]


class PresenceConfiguration(models.Model):
    """Per agent group: capacity, auto-accept, declining, statuses allowed, status changes."""

    name = models.CharField(_("name"), max_length=80, unique=True)
    capacity = models.PositiveSmallIntegerField(
        _("capacity (units)"),
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
    )
    auto_accept = models.BooleanField(
        _("auto-accept"), default=False, help_text=_("Pushed work is accepted at once.")
    )
    console_required = models.BooleanField(
        _("console required"),
        default=True,
        help_text=_(
            "Route only to agents with a live console. Turn off for agents that work "
            "through the API."
        ),
    )
    max_offers = models.PositiveSmallIntegerField(
        _("offers at once"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_(
            "Most offers an agent holds unanswered at one time; empty: no limit. Accepted "
            "work does not count; auto-accept agents never hold an offer unanswered."
        ),
    )
    allow_decline = models.BooleanField(_("allow decline"), default=True)
    require_decline_reason = models.BooleanField(_("require a decline reason"), default=False)
    decline_reasons = models.ManyToManyField(
        DeclineReason, blank=True, related_name="+", verbose_name=_("decline reasons")
    )
    allowed_statuses = models.ManyToManyField(
        PresenceStatus,
        blank=True,
        related_name="+",
        verbose_name=_("statuses agents may pick"),
        help_text=_("Empty means every status."),
    )
    status_after_decline = models.ForeignKey(
        PresenceStatus,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("status after decline"),
    )
    status_after_timeout = models.ForeignKey(
        PresenceStatus,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("status after push timeout"),
    )

    class Meta:
        ordering = ["name"]
        verbose_name = _("presence configuration")
        verbose_name_plural = _("presence configurations")
        constraints = [
            models.CheckConstraint(condition=Q(capacity__gte=1), name="presence_config_capacity"),
            models.CheckConstraint(
                condition=Q(max_offers__isnull=True) | Q(max_offers__gte=1),
                name="presence_config_max_offers_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Agent(models.Model):
    """An agent and their live routing state: status, capacity, what they hold, their console.

    ``used_capacity`` and ``open_count`` are kept in step with live agent work by the routing
    services and checked against it by the sweep. ``capacity`` is the capacity in force: it follows
    ``configured_capacity`` but never drops below what the agent already holds, so the CHECK
    constraint below holds even when a supervisor lowers capacity under an agent's open work.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent"
    )
    presence_config = models.ForeignKey(
        PresenceConfiguration,
        on_delete=models.PROTECT,
        related_name="agents",
        verbose_name=_("presence configuration"),
    )
    status = models.ForeignKey(
        PresenceStatus,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="agents",
        verbose_name=_("presence status"),
    )
    status_changed_at = models.DateTimeField(_("status since"), null=True, blank=True)
    configured_capacity = models.PositiveSmallIntegerField(_("configured capacity"), default=10)
    # Units, exact to a hundredth: a percentage-sized item takes its share of the agent's
    # capacity exactly (50 % of 3 is 1.5), and the CHECK below compares the exact load.
    capacity = models.DecimalField(_("capacity"), max_digits=7, decimal_places=2, default=10)
    used_capacity = models.DecimalField(
        _("used capacity"), max_digits=7, decimal_places=2, default=0
    )
    open_count = models.PositiveSmallIntegerField(_("open items"), default=0)
    last_assigned_at = models.DateTimeField(_("last assignment"), null=True, blank=True)
    console_seen_at = models.DateTimeField(_("console last seen"), null=True, blank=True)

    class Meta:
        ordering = ["user__username"]
        verbose_name = _("agent")
        verbose_name_plural = _("agents")
        constraints = [
            models.CheckConstraint(
                condition=Q(used_capacity__lte=F("capacity")), name="agent_used_within_capacity"
            ),
            models.CheckConstraint(condition=Q(capacity__gte=1), name="agent_capacity_positive"),
            models.CheckConstraint(
                condition=Q(capacity__gte=F("configured_capacity")),
                name="agent_capacity_not_below_configured",
            ),
        ]
        indexes = [models.Index(fields=["status"], name="agent_status")]

    def __str__(self) -> str:
        return self.user.get_full_name() or self.user.username

    @property
    def spare_capacity(self) -> Decimal:
        return self.capacity - self.used_capacity
