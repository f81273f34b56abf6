"""Admin of presence: statuses, decline reasons, presence configurations and agents.

Edits that change live routing call services: a status's channels (offers it no longer covers go
back), a configuration's capacity (agents' capacity follows), an agent's configuration and
queues, and setting agents offline.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from omnirouter.errors import DomainError
from omnirouter.roles import signed_in
from presence import services as presence_services
from presence.models import Agent, DeclineReason, PresenceConfiguration, PresenceStatus
from routing import engine
from routing import services as routing_services
from routing.models import AgentSkill, Queue


class LoadDisplay:
    """Capacity in units, exact to a hundredth: shown as 3 or 1.5, not 3.00 (the stored form)."""

    @admin.display(description=_("capacity"), ordering="capacity")
    def capacity_units(self, agent: Agent) -> int | float:
        return engine.as_number(agent.capacity)

    @admin.display(description=_("used capacity"), ordering="used_capacity")
    def used_units(self, agent: Agent) -> int | float:
        return engine.as_number(agent.used_capacity)


# --- Statuses and decline reasons ------------------------------------------------------------


@admin.register(PresenceStatus)
class PresenceStatusAdmin(admin.ModelAdmin):
    list_display = ["name", "is_online", "channel_list", "agent_count"]
    list_filter = ["is_online", "channels"]
    search_fields = ["name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PresenceStatus]:
        return (
            super()
            .get_queryset(request)
            .annotate(agent_count=Count("agents", distinct=True))
            .prefetch_related("channels")
        )

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "channels":
            kwargs["widget"] = forms.CheckboxSelectMultiple
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    @admin.display(description=_("channels"))
    def channel_list(self, status: PresenceStatus) -> str:
        return ", ".join(c.label for c in status.channels.all()) or "-"

    @admin.display(description=_("agents in it now"), ordering="agent_count")
    def agent_count(self, status: PresenceStatus) -> int:
        return status.agent_count  # type: ignore[attr-defined]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if change:
            # Agents in this status may no longer cover a channel they hold offers for.
            routing_services.release_uncovered_offers(status_id=form.instance.pk)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        # Deleting a status would set its agents' status to NULL behind the routing services'
        # back (offers still held while offline): the admin refuses while agents are in it.
        deleted, counts, perms, protected = super().get_deleted_objects(objs, request)
        in_use = Agent.objects.filter(status__in=list(objs)).select_related("user", "status")
        protected = list(protected) + [
            _("%(agent)s is in status %(status)s") % {"agent": a, "status": a.status}
            for a in in_use
        ]
        return deleted, counts, perms, protected


@admin.register(DeclineReason)
class DeclineReasonAdmin(admin.ModelAdmin):
    list_display = ["label", "active"]
    list_editable = ["active"]
    list_filter = ["active"]
    search_fields = ["label"]


# --- Presence configurations -----------------------------------------------------------------


class ConfigurationAgentInline(LoadDisplay, admin.TabularInline):
    """The configuration's agents, read-only: an agent changes configuration on their own page."""

    model = Agent
    extra = 0
    can_delete = False
    show_change_link = True
    fields = readonly_fields = (
        "user",
        "status",
        "capacity_units",
        "used_units",
        "open_count",
        "console_seen_at",
    )
    verbose_name = _("agent")
    verbose_name_plural = _("agents with this configuration")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Agent]:
        return super().get_queryset(request).select_related("user", "status")


@admin.register(PresenceConfiguration)
class PresenceConfigurationAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "capacity",
        "auto_accept",
        "max_offers",
        "console_required",
        "allow_decline",
        "require_decline_reason",
        "agent_count",
    ]
    list_filter = ["auto_accept", "console_required", "allow_decline", "require_decline_reason"]
    search_fields = ["name"]
    filter_horizontal = ["decline_reasons", "allowed_statuses"]
    fieldsets = [
        (
            None,
            {"fields": ["name", "capacity", "auto_accept", "max_offers", "console_required"]},
        ),
        (
            _("Declining"),
            {"fields": ["allow_decline", "require_decline_reason", "decline_reasons"]},
        ),
        (
            _("Statuses"),
            {"fields": ["allowed_statuses", "status_after_decline", "status_after_timeout"]},
        ),
    ]
    inlines = [ConfigurationAgentInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PresenceConfiguration]:
        return super().get_queryset(request).annotate(agent_count=Count("agents"))

    @admin.display(description=_("agents"), ordering="agent_count")
    def agent_count(self, config: PresenceConfiguration) -> int:
        return config.agent_count  # type: ignore[attr-defined]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if change:
            # The new capacity becomes the agents' capacity now (never below what they hold).
            routing_services.apply_presence_config(config_id=form.instance.pk)


# --- Agents ----------------------------------------------------------------------------------


class AgentAdminForm(forms.ModelForm):
    queues = forms.ModelMultipleChoiceField(
        queryset=Queue.objects.all(),
        required=False,
        label=_("queues"),
        widget=FilteredSelectMultiple(_("queues"), is_stacked=False),
    )

    class Meta:
        model = Agent
        fields = ["user", "presence_config"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["queues"].initial = list(self.instance.queues.all())


class AgentSkillInline(admin.TabularInline):
    """The agent's skills and levels; saved through the skills services (logged, and routing
    looks again: the agent may now take waiting work)."""

    model = AgentSkill
    extra = 1
    fields = ["skill", "level"]
    autocomplete_fields = ["skill"]
    verbose_name = _("skill")
    verbose_name_plural = _("skills")


@admin.register(Agent)
class AgentAdmin(LoadDisplay, admin.ModelAdmin):
    form = AgentAdminForm
    inlines = [AgentSkillInline]

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        # Skills are given once the agent exists (their add page makes the agent first).
        return list(self.inlines) if obj is not None else []

    list_display = [
        "__str__",
        "presence_config",
        "status",
        "capacity_units",
        "used_units",
        "open_count",
        "console_seen_at",
    ]
    list_filter = ["status", "status__is_online", "presence_config", "queues"]
    search_fields = ["user__username", "user__first_name", "user__last_name", "user__email"]
    list_select_related = ["user", "status", "presence_config"]
    autocomplete_fields = ["user"]
    live_fields = [
        "status",
        "status_changed_at",
        "configured_capacity",
        "capacity_units",
        "used_units",
        "open_count",
        "last_assigned_at",
        "console_seen_at",
    ]
    actions = ["set_offline"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("user", "presence_config", "queues", *(self.live_fields if obj else []))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # The user is chosen once; live state is the services' to change.
        return ["user", *self.live_fields] if obj else []

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Agent work refers to agents; take an agent out of routing by setting them offline and
        # removing their queues, or deactivate their user.
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            presence_services.update_agent(
                agent=Agent.objects.get(pk=obj.pk),
                presence_config=data["presence_config"],
                queues=data["queues"],
            )
            return
        agent = presence_services.create_agent_for_user(
            user=data["user"], presence_config=data["presence_config"], queues=data["queues"]
        )
        # The admin goes on with ``obj`` (log entry, redirect): make it the created agent.
        obj.pk = agent.pk
        obj._state.adding = False

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not AgentSkill:
            super().save_formset(request, form, formset, change)
            return
        actor = signed_in(request.user)
        agent = Agent.objects.get(pk=form.instance.pk)
        changed = formset.save(commit=False)  # also sets deleted_objects; writes nothing
        for row in formset.deleted_objects:
            routing_services.remove_agent_skill(agent_skill=row, actor=actor)
        for row in changed:
            if row.pk is not None:
                before = AgentSkill.objects.select_related("skill").get(pk=row.pk)
                if before.skill_id != row.skill_id:
                    routing_services.remove_agent_skill(agent_skill=before, actor=actor)
            routing_services.set_agent_skill(
                agent=agent, skill=row.skill, level=row.level, actor=actor
            )

    @admin.action(description=_("Set selected agents offline"), permissions=["change"])
    def set_offline(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        done = 0
        for agent in queryset.select_related("presence_config").order_by("id"):
            try:
                routing_services.set_presence(
                    agent=agent, status=None, actor=signed_in(request.user)
                )
            except DomainError as exc:
                self.message_user(request, f"{agent}: {exc.message}", messages.WARNING)
            else:
                done += 1
        self.message_user(
            request,
            ngettext("%(count)d agent set offline.", "%(count)d agents set offline.", done)
            % {"count": done},
            messages.SUCCESS,
        )


# --- Users: show the agent record on the user's page ------------------------------------------


class UserAgentInline(LoadDisplay, admin.StackedInline):
    model = Agent
    extra = 0
    can_delete = False
    show_change_link = True
    fields = readonly_fields = (
        "presence_config",
        "status",
        "capacity_units",
        "used_units",
        "open_count",
    )
    verbose_name = _("agent record")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


_user_model = get_user_model()
if admin.site.is_registered(_user_model):
    _user_admin_class = type(admin.site.get_model_admin(_user_model))
    admin.site.unregister(_user_model)
else:
    _user_admin_class = UserAdmin


@admin.register(_user_model)
class AgentAwareUserAdmin(_user_admin_class):  # type: ignore[valid-type,misc]
    inlines = [*getattr(_user_admin_class, "inlines", []), UserAgentInline]
