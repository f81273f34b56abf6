"""WebSocket URL patterns (named so as not to clash with the ``routing`` app)."""

from django.urls import path  # noqa: F401

websocket_urlpatterns: list = []
