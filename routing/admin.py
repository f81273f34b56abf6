"""Admin of routing: channels, routing configurations and queues to configure; work items, agent
work and the action log to inspect.

Live state (item status, agent work) is never edited by hand here: it changes only through the
admin actions below, which call the routing services.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from simple_history.admin import SimpleHistoryAdmin

from omnirouter import roles
from omnirouter.errors import DomainError
from omnirouter.roles import signed_in
from routing import services
from routing.models import (
    ActionLog,
    AgentWork,
    ClassificationRule,
    ExceptionRule,
    ExceptionTrigger,
    ItemSkill,
    Queue,
    QueueMembership,
    RoutingConfiguration,
    ServiceChannel,
    Skill,
    WorkItem,
    WorkItemStatus,
)
from routing.selectors import explain_wait
from routing.services.classification import check_classification_rule
from routing.services.exceptions import check_exception_actions
from routing.services.skills import drop_skills, need, require_skills


class ReadOnlyAdminMixin:
    """Records written only by services: viewable, never added, changed or deleted by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Configuration ---------------------------------------------------------------------------


@admin.register(ServiceChannel)
class ServiceChannelAdmin(admin.ModelAdmin):
    list_display = ["label", "key", "default_size_units"]
    search_fields = ["label", "key"]
    prepopulated_fields = {"key": ["label"]}


@admin.register(RoutingConfiguration)
class RoutingConfigurationAdmin(SimpleHistoryAdmin):
    list_display = [
        "name",
        "routing_priority",
        "routing_model",
        "item_size",
        "push_timeout_seconds",
        "service_level",
        "queue_count",
    ]
    list_filter = ["routing_model", "routing_priority"]
    search_fields = ["name"]
    fieldsets = [
        (None, {"fields": ["name", "routing_priority", "routing_model"]}),
        (_("Item size"), {"fields": ["size_units", "size_percent"]}),
        (_("Offers"), {"fields": ["push_timeout_seconds"]}),
        (
            _("Service level"),
            {"fields": ["service_level_target_seconds", "service_level_goal_percent"]},
        ),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[RoutingConfiguration]:
        return super().get_queryset(request).annotate(queue_count=Count("queues"))

    @admin.display(description=_("item size"))
    def item_size(self, config: RoutingConfiguration) -> str:
        if config.size_units:
            return _("%(units)d units") % {"units": config.size_units}
        if config.size_percent:
            return _("%(percent)d%% of capacity") % {"percent": config.size_percent}
        return str(_("channel default"))

    @admin.display(description=_("service level"))
    def service_level(self, config: RoutingConfiguration) -> str:
        return _("%(goal)d%% in %(target)d s") % {
            "goal": config.service_level_goal_percent,
            "target": config.service_level_target_seconds,
        }

    @admin.display(description=_("queues"), ordering="queue_count")
    def queue_count(self, config: RoutingConfiguration) -> int:
        return config.queue_count  # type: ignore[attr-defined]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        services.stamp_version(obj, request.user)
        if change:
            # A new routing priority must reach the items already waiting in its queues.
            services.update_routing_config(config=obj, changes={})
        else:
            services.save_configuration(instance=obj, changes={})


class QueueMembershipInline(admin.TabularInline):
    model = QueueMembership
    extra = 0
    autocomplete_fields = ["agent"]
    verbose_name = _("member")
    verbose_name_plural = _("members")


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = ["name", "routing_config", "member_count", "waiting_count"]
    list_filter = ["routing_config"]
    search_fields = ["name"]
    list_select_related = ["routing_config"]
    autocomplete_fields = ["routing_config"]
    filter_horizontal = ["supervisors"]
    inlines = [QueueMembershipInline]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        """A new queue is supervised by the admins unless the form says otherwise: a queue
        nobody supervises would be invisible on every dashboard."""
        initial: dict[str, Any] = dict(super().get_changeform_initial_data(request))
        initial.setdefault(
            "supervisors",
            list(
                get_user_model()
                .objects.filter(is_active=True)
                .filter(Q(is_superuser=True) | Q(groups__name=roles.ADMIN))
                .distinct()
                .values_list("pk", flat=True)
            ),
        )
        return initial

    def get_queryset(self, request: HttpRequest) -> QuerySet[Queue]:
        # Subqueries, not joins: a join would aggregate over every item the queue ever held.
        waiting = (
            WorkItem.objects.filter(queue=OuterRef("pk"), status=WorkItemStatus.WAITING)
            .order_by()
            .values("queue")
            .annotate(n=Count("id"))
            .values("n")
        )
        members = (
            QueueMembership.objects.filter(queue=OuterRef("pk"))
            .order_by()
            .values("queue")
            .annotate(n=Count("id"))
            .values("n")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                waiting_count=Coalesce(Subquery(waiting, output_field=IntegerField()), Value(0)),
                member_count=Coalesce(Subquery(members, output_field=IntegerField()), Value(0)),
            )
        )

    @admin.display(description=_("members"), ordering="member_count")
    def member_count(self, queue: Queue) -> int:
        return queue.member_count  # type: ignore[attr-defined]

    @admin.display(description=_("waiting"), ordering="waiting_count")
    def waiting_count(self, queue: Queue) -> int:
        return queue.waiting_count  # type: ignore[attr-defined]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # Items follow a new routing configuration; new members may take waiting work now.
        services.sync_queue_items(queue_ids=[form.instance.pk])


# --- Rules ----------------------------------------------------------------------------------


def _form_error(exc: DomainError, fields: Any) -> ValidationError:
    """A service's refusal as a form error, on the field it names when the form has it."""
    field = exc.code if exc.code in fields else ("actions" if "actions" in fields else None)
    return ValidationError({field: exc.message} if field else exc.message)


class ClassificationRuleForm(forms.ModelForm):
    """Checked as the API checks it (``check_classification_rule``); queues and skills named in
    the JSON are stored by id."""

    class Meta:
        model = ClassificationRule
        fields = ["name", "position", "active", "queue", "conditions", "actions"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        scope = data.get("queue", self.instance.queue if self.instance.queue_id else None)
        try:
            data["conditions"], data["actions"] = check_classification_rule(
                conditions=data.get("conditions", self.instance.conditions),
                actions=data.get("actions", self.instance.actions),
                scope_queue_id=scope.pk if scope is not None else None,
                rule_id=self.instance.pk,
                active=bool(data.get("active", self.instance.active)),
            )
        except DomainError as exc:
            raise _form_error(exc, self.fields) from None
        return data


def _summary(actions: Any) -> str:
    if not isinstance(actions, dict):
        return ""
    return ", ".join(f"{k}: {v}" for k, v in actions.items())


@admin.register(ClassificationRule)
class ClassificationRuleAdmin(SimpleHistoryAdmin):
    form = ClassificationRuleForm
    list_display = ["name", "position", "active", "queue", "conditions_text", "actions_text"]
    list_display_links = ["name"]
    list_editable = ["position", "active"]
    list_filter = ["active", "queue"]
    search_fields = ["name"]
    ordering = ["position", "id"]
    list_select_related = ["queue"]
    change_list_template = "admin/routing/classificationrule/change_list.html"

    @admin.display(description=_("conditions"))
    def conditions_text(self, rule: ClassificationRule) -> str:
        try:
            return " and ".join(services.describe_condition(c) for c in rule.conditions) or "-"
        except (TypeError, AttributeError):
            return str(rule.conditions)

    @admin.display(description=_("actions"))
    def actions_text(self, rule: ClassificationRule) -> str:
        return _summary(rule.actions)

    def get_changelist_form(self, request: HttpRequest, **kwargs: Any) -> Any:
        kwargs.setdefault("form", ClassificationRuleForm)
        return super().get_changelist_form(request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        services.save_classification_rule(rule=obj, changes={}, actor=signed_in(request.user))

    def get_urls(self) -> list[URLPattern]:
        test = path(
            "test/",
            self.admin_site.admin_view(self.test_view),
            name="routing_classificationrule_test",
        )
        return [test, *super().get_urls()]

    def test_view(self, request: HttpRequest) -> HttpResponse:
        """ "Test rules against a sample item": the preview API's answer, as a page."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = SampleItemForm(request.POST or None)
        result = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                result = services.preview_classification(
                    queue=data["queue"].pk,
                    channel=data["channel"].pk,
                    subject=data["subject"],
                    payload=data["payload"] or {},
                    customer=data["customer"] or {},
                    language=data["language"],
                    priority=data["priority"],
                    secondary_priority=data["secondary_priority"],
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Test rules against a sample item"),
            "form": form,
            "result": result,
        }
        return TemplateResponse(
            request, "admin/routing/classificationrule/test_rules.html", context
        )


class SampleItemForm(forms.Form):
    queue = forms.ModelChoiceField(Queue.objects.all(), label=_("queue it arrives in"))
    channel = forms.ModelChoiceField(ServiceChannel.objects.all(), label=_("channel"))
    subject = forms.CharField(label=_("subject"), required=False, max_length=255)
    language = forms.CharField(label=_("language"), required=False, max_length=20)
    priority = forms.IntegerField(label=_("priority"), min_value=1, max_value=10, initial=5)
    secondary_priority = forms.IntegerField(
        label=_("secondary priority"), min_value=1, max_value=10, initial=5
    )
    payload = forms.JSONField(
        label=_("payload"),
        required=False,
        initial=dict,
        help_text=_('A JSON object, e.g. {"tier": "gold", "bot_answers": {"topic": "billing"}}'),
    )
    customer = forms.JSONField(
        label=_("customer attributes"),
        required=False,
        initial=dict,
        help_text=_('A JSON object, e.g. {"cases": 3}'),
    )

    def clean_payload(self) -> Any:
        return _object(self.cleaned_data.get("payload"))

    def clean_customer(self) -> Any:
        return _object(self.cleaned_data.get("customer"))


def _object(value: Any) -> dict[str, Any]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise ValidationError(_("Enter a JSON object ({...})."))
    return value


class ExceptionRuleForm(forms.ModelForm):
    class Meta:
        model = ExceptionRule
        fields = ["name", "position", "active", "queue", "trigger", "threshold", "actions"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            data["actions"] = check_exception_actions(data.get("actions", self.instance.actions))
        except DomainError as exc:
            raise _form_error(exc, self.fields) from None
        trigger = data.get("trigger", self.instance.trigger)
        threshold = data.get("threshold", self.instance.threshold)
        if trigger in (ExceptionTrigger.WAITED, ExceptionTrigger.NO_AGENT) and not threshold:
            raise ValidationError({"threshold": _("N is a number of seconds, at least 1.")})
        return data


@admin.register(ExceptionRule)
class ExceptionRuleAdmin(SimpleHistoryAdmin):
    form = ExceptionRuleForm
    list_display = ["name", "position", "active", "queue", "trigger", "threshold", "actions_text"]
    list_display_links = ["name"]
    list_editable = ["position", "active"]
    list_filter = ["active", "trigger", "queue"]
    search_fields = ["name"]
    ordering = ["position", "id"]
    list_select_related = ["queue"]

    @admin.display(description=_("actions"))
    def actions_text(self, rule: ExceptionRule) -> str:
        return _summary(rule.actions)

    def get_changelist_form(self, request: HttpRequest, **kwargs: Any) -> Any:
        kwargs.setdefault("form", ExceptionRuleForm)
        return super().get_changelist_form(request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        services.save_exception_rule(rule=obj, changes={}, actor=signed_in(request.user))


# --- Live work (read-only) -------------------------------------------------------------------


def _why(work: AgentWork) -> str:
    return (work.routing_reason or {}).get("text", "")


class AgentWorkInline(admin.TabularInline):
    model = AgentWork
    extra = 0
    can_delete = False
    show_change_link = True
    fields = readonly_fields = (
        "agent",
        "state",
        "pushed_at",
        "expires_at",
        "opened_at",
        "ended_at",
        "decline_reason",
        "why",
    )
    ordering = ["pushed_at", "id"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[AgentWork]:
        return super().get_queryset(request).select_related("agent__user")

    @admin.display(description=_("why this agent"))
    def why(self, work: AgentWork) -> str:
        return _why(work)


class ActionLogInline(admin.TabularInline):
    """The item's history besides offers: rules that fired, supervisors' moves and pushes."""

    model = ActionLog
    fk_name = "item"
    extra = 0
    can_delete = False
    fields = readonly_fields = ("at", "verb", "actor", "detail")
    ordering = ["at", "id"]
    verbose_name = _("history entry")
    verbose_name_plural = _("history")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Skill)
class SkillAdmin(admin.ModelAdmin):
    list_display = ["name", "attribute", "value", "agent_count"]
    search_fields = ["name", "attribute", "value"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Skill]:
        return super().get_queryset(request).annotate(agent_count=Count("agent_skills"))

    @admin.display(description=_("agents with it"), ordering="agent_count")
    def agent_count(self, skill: Skill) -> int:
        return skill.agent_count  # type: ignore[attr-defined]


class ItemSkillInline(admin.TabularInline):
    """What the item needs. Edited here while the item is live; saved through the one writer of
    requirements (``services.skills``), which asks routing to look again."""

    model = ItemSkill
    extra = 1
    fields = ["skill", "min_level", "additional", "drop_after_seconds"]
    autocomplete_fields = ["skill"]

    def _editable(self, obj: Any) -> bool:
        return obj is not None and obj.status in (WorkItemStatus.WAITING, WorkItemStatus.OFFERED)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(obj) and super().has_delete_permission(request, obj)


@admin.register(WorkItem)
class WorkItemAdmin(admin.ModelAdmin):
    """Read-mostly: items change status only through the actions, which call services. Only
    the required skills (an inline) are edited here, through the skills service."""

    list_display = [
        "id",
        "subject",
        "queue",
        "channel",
        "status",
        "priority",
        "routing_priority",
        "enqueued_at",
    ]
    list_filter = ["status", "queue", "channel"]
    search_fields = ["=id", "subject"]
    list_select_related = ["queue", "channel"]
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "subject",
        "status",
        "waiting_because",
        "queue",
        "channel",
        "priority",
        "routing_priority",
        "size_units",
        "size_percent",
        "payload",
        "record_type",
        "record_id",
        "preferred_agent",
        "preferred_until",
        "created_by",
        "created_at",
        "enqueued_at",
        "ended_at",
        "transfer_from",
        "transfer_note",
    )
    inlines = [ItemSkillInline, AgentWorkInline, ActionLogInline]
    actions = ["cancel_items"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Every field of the item is read-only (``fields = readonly_fields``); the change
        # permission lets the requirements inline be saved, and ``save_model`` writes nothing.
        return request.user.has_perm("routing.change_workitem")

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        pass  # the item's own fields are the services'; see save_formset

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not ItemSkill:
            formset.save(commit=False)  # read-only: nothing to write (the change message reads it)
            return
        item = form.instance
        changed = formset.save(commit=False)  # also sets deleted_objects; writes nothing
        dropped = [row.skill_id for row in formset.deleted_objects]
        needs = []
        for row in changed:
            if row.pk is not None:
                before = ItemSkill.objects.get(pk=row.pk)
                if before.skill_id != row.skill_id:
                    dropped.append(before.skill_id)
            needs.append(
                need(
                    row.skill_id,
                    row.min_level,
                    additional=row.additional,
                    drop_after_seconds=row.drop_after_seconds,
                )
            )
        try:
            if dropped:
                drop_skills(item, dropped)
            require_skills(item, needs)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("routing.change_workitem")

    @admin.display(description=_("waiting because"))
    def waiting_because(self, item: WorkItem) -> str:
        if item.status != WorkItemStatus.WAITING:
            return "-"
        return explain_wait(item)

    @admin.action(description=_("Cancel selected items"), permissions=["cancel"])
    def cancel_items(self, request: HttpRequest, queryset: QuerySet[WorkItem]) -> None:
        canceled = 0
        refused: list[str] = []
        for item_id in queryset.order_by("id").values_list("id", flat=True):
            try:
                services.cancel_work_item(item_id=item_id)
            except DomainError as exc:
                refused.append(f"#{item_id}: {exc.message}")
            else:
                canceled += 1
        if canceled:
            self.message_user(
                request,
                ngettext("%(count)d item canceled.", "%(count)d items canceled.", canceled)
                % {"count": canceled},
                messages.SUCCESS,
            )
        if refused:
            self.message_user(
                request,
                _("Not canceled: %(items)s") % {"items": "; ".join(refused)},
                messages.WARNING,
            )


@admin.register(AgentWork)
class AgentWorkAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "item",
        "agent",
        "queue",
        "channel",
        "state",
        "pushed_at",
        "opened_at",
        "ended_at",
        "decline_reason",
    ]
    list_filter = ["state", "queue", "channel", "auto_accepted"]
    search_fields = ["=id", "item__subject", "agent__user__username"]
    list_select_related = ["item", "agent__user", "queue", "channel"]
    date_hierarchy = "pushed_at"
    fields = readonly_fields = (
        "item",
        "agent",
        "queue",
        "channel",
        "state",
        "units",
        "auto_accepted",
        "enqueued_at",
        "pushed_at",
        "expires_at",
        "opened_at",
        "ended_at",
        "decline_reason",
        "end_note",
        "why",
        "routing_reason",
    )

    @admin.display(description=_("why this agent"))
    def why(self, work: AgentWork) -> str:
        return _why(work)


@admin.register(ActionLog)
class ActionLogAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["at", "actor", "verb", "item", "agent"]
    list_filter = ["verb"]
    search_fields = ["verb", "actor__username", "agent__user__username", "item__subject"]
    list_select_related = ["actor", "item", "agent__user"]
    date_hierarchy = "at"
    fields = readonly_fields = ("at", "actor", "verb", "item", "agent", "detail")
