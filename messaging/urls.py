"""Messaging URLs: provider webhooks, customer pages, self-service help, the demo shop, the API."""

from django.urls import path

from messaging import webhooks

urlpatterns = [
    path("webhooks/sms/<int:account_id>/", webhooks.sms_webhook, name="webhook-sms"),
    path("webhooks/whatsapp/<int:account_id>/", webhooks.whatsapp_webhook, name="webhook-whatsapp"),
    path(
        "webhooks/messenger/<int:account_id>/",
        webhooks.messenger_webhook,
        name="webhook-messenger",
    ),
]
