"""Messaging URLs: provider webhooks, customer pages, self-service help, the API."""

from django.urls import path

from messaging import api, views, webhooks

urlpatterns = [
    path("webhooks/sms/<int:account_id>/", webhooks.sms_webhook, name="webhook-sms"),
    path("webhooks/whatsapp/<int:account_id>/", webhooks.whatsapp_webhook, name="webhook-whatsapp"),
    path(
        "webhooks/messenger/<int:account_id>/",
        webhooks.messenger_webhook,
        name="webhook-messenger",
    ),
    path("customers/<int:customer_id>/", views.customer_page, name="customer"),
    path("customers/<int:customer_id>/merge/", views.customer_merge, name="customer-merge"),
    path("customers/<int:customer_id>/unmerge/", views.customer_unmerge, name="customer-unmerge"),
    path("help/", views.help_page, name="help"),
    path("help/confirm/<str:token>/", views.help_confirm, name="help-confirm"),
    path("help/cases/<str:token>/", views.help_case, name="help-case"),
    path("api/customers/<int:customer_id>/", api.CustomerView.as_view(), name="api-customer"),
    path(
        "api/customers/<int:customer_id>/merge/",
        api.CustomerMergeView.as_view(),
        name="api-customer-merge",
    ),
    path(
        "api/customers/<int:customer_id>/unmerge/",
        api.CustomerUnmergeView.as_view(),
        name="api-customer-unmerge",
    ),
    path(
        "api/customers/<int:customer_id>/timeline/",
        api.CustomerTimelineView.as_view(),
        name="api-customer-timeline",
    ),
    path(
        "api/customers/<int:customer_id>/identities/",
        api.CustomerIdentitiesView.as_view(),
        name="api-customer-identities",
    ),
    path(
        "api/customers/<int:customer_id>/suggestions/merge/",
        api.SuggestedMergeView.as_view(),
        name="api-customer-suggested-merge",
    ),
    path("api/cases/", api.CasesView.as_view(), name="api-cases"),
    path(
        "api/conversations/<int:conversation_id>/",
        api.ConversationView.as_view(),
        name="api-conversation",
    ),
    path(
        "api/conversations/<int:conversation_id>/reply/",
        api.ConversationReplyView.as_view(),
        name="api-conversation-reply",
    ),
    path(
        "api/conversations/<int:conversation_id>/close/",
        api.ConversationCloseView.as_view(),
        name="api-conversation-close",
    ),
    path(
        "api/conversations/<int:conversation_id>/cases/",
        api.ConversationCaseView.as_view(),
        name="api-conversation-cases",
    ),
]
