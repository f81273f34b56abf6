"""Admin: channel accounts (secrets, bot flow, routing), customers with identities, conversations
with their transcripts, cases, quick replies. Writes that carry business rules (merging) go
through the services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from messaging import services
from messaging.models import (
    Case,
    ChannelAccount,
    Conversation,
    Customer,
    CustomerIdentity,
    MergeRecord,
    Message,
    QuickReply,
)
from omnirouter.errors import DomainError
from omnirouter.roles import signed_in


@admin.register(ChannelAccount)
class ChannelAccountAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "active", "queue", "service_channel", "provider_base_url"]
    list_filter = ["kind", "active"]
    search_fields = ["name", "phone_number", "phone_number_id", "page_id", "public_key"]
    # Provider APIs are https; a bare host typed in the form means https too.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = [
        (None, {"fields": ["name", "kind", "active", "language"]}),
        (_("Routing"), {"fields": ["queue", "service_channel"]}),
        (
            _("Provider"),
            {
                "fields": [
                    "provider_base_url",
                    "api_version",
                    "account_sid",
                    "phone_number",
                    "phone_number_id",
                    "page_id",
                ]
            },
        ),
        (
            _("Secrets"),
            {"fields": ["auth_token", "app_secret", "access_token", "verify_token"]},
        ),
        (_("Web chat"), {"fields": ["public_key", "allowed_origins"]}),
        (_("Pre-chat bot"), {"fields": ["bot_flow"]}),
    ]


class IdentityInline(admin.TabularInline):
    model = CustomerIdentity
    extra = 0
    fields = ["kind", "value", "created_at"]


@admin.action(description=_("Merge the selected customers into the oldest one"))
def merge_selected(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
    customers = list(queryset.filter(merged_into__isnull=True).order_by("created_at", "pk"))
    if len(customers) < 2:
        modeladmin.message_user(request, _("Select at least two customers."), messages.WARNING)
        return
    survivor = customers[0]
    try:
        for other in customers[1:]:
            services.merge_customers(survivor=survivor, other=other, actor=signed_in(request.user))
    except DomainError as exc:
        modeladmin.message_user(request, exc.message, messages.ERROR)
        return
    modeladmin.message_user(request, _("Merged into %(c)s.") % {"c": survivor}, messages.SUCCESS)


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["id", "display_name", "created_at", "merged_into"]
    search_fields = ["display_name", "identities__value"]
    list_filter = [("merged_into", admin.EmptyFieldListFilter)]
    inlines = [IdentityInline]
    actions = [merge_selected]
    readonly_fields = ["merged_into", "merged_at", "merged_by"]


@admin.register(MergeRecord)
class MergeRecordAdmin(admin.ModelAdmin):
    """The merge log: read only here; merges are undone from the customer page or the API."""

    list_display = ["id", "merged", "survivor", "actor", "merged_at", "undone_at", "undone_by"]
    list_filter = [("undone_at", admin.EmptyFieldListFilter)]
    readonly_fields = [f.name for f in MergeRecord._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    fields = readonly_fields = ("created_at", "direction", "author", "text", "status", "error")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["id", "customer", "account", "status", "assigned_agent", "started_at"]
    list_filter = ["status", "account"]
    search_fields = ["customer__display_name", "identity__value"]
    raw_id_fields = ["customer", "identity", "work_item", "assigned_agent"]
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "conversation", "direction", "author", "status", "created_at"]
    list_filter = ["direction", "author", "status"]
    search_fields = ["text", "provider_message_id"]
    raw_id_fields = ["conversation", "agent"]


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin):
    list_display = ["id", "subject", "status", "priority", "customer", "origin", "created_at"]
    list_filter = ["status", "priority", "origin"]
    search_fields = ["subject", "customer__display_name"]
    raw_id_fields = ["customer", "conversation", "work_item", "opened_by"]
    exclude = ["access_token"]


@admin.register(QuickReply)
class QuickReplyAdmin(admin.ModelAdmin):
    list_display = ["title", "language", "position"]
    list_filter = ["language"]
