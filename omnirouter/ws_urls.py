"""WebSocket URL patterns (named so as not to clash with the ``routing`` app)."""

from django.urls import path

from messaging.consumers import AgentConversationConsumer, WebchatConsumer
from presence.consumers import AgentConsumer
from supervisor.consumers import SupervisorConsumer

websocket_urlpatterns: list = [
    path("ws/agent/", AgentConsumer.as_asgi()),
    path("ws/agent/conversations/", AgentConversationConsumer.as_asgi()),
    path("ws/supervisor/", SupervisorConsumer.as_asgi()),
]

# Customer-facing sockets, embedded on customers' own sites: no staff session, and each consumer
# checks the page's origin against its channel account (the staff validator would refuse them).
customer_websocket_urlpatterns: list = [
    path("ws/webchat/<slug:account_key>/", WebchatConsumer.as_asgi()),
]
