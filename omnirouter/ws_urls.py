"""WebSocket URL patterns (named so as not to clash with the ``routing`` app)."""

from django.urls import path

from presence.consumers import AgentConsumer
from supervisor.consumers import SupervisorConsumer

websocket_urlpatterns: list = [
    path("ws/agent/", AgentConsumer.as_asgi()),
    path("ws/supervisor/", SupervisorConsumer.as_asgi()),
]
