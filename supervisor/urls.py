"""Supervisor URLs: the dashboard page (``urlpatterns``, mounted at the root) and the API
(``api_urlpatterns``, mounted under /api/ by ``omnirouter.urls``)."""

from django.urls import path

from supervisor import api, views

urlpatterns = [
    path("supervisor/", views.dashboard, name="supervisor-dashboard"),
]

api_urlpatterns = [
    path("supervisor/snapshot/", api.SnapshotView.as_view(), name="supervisor-snapshot"),
    path("supervisor/history/", api.HistoryView.as_view(), name="supervisor-history"),
    path(
        "supervisor/agents/<int:agent_id>/presence/",
        api.AgentPresenceActionView.as_view(),
        name="supervisor-agent-presence",
    ),
    path(
        "supervisor/items/<int:item_id>/move/",
        api.ItemMoveActionView.as_view(),
        name="supervisor-item-move",
    ),
    path(
        "supervisor/items/<int:item_id>/eligible-agents/",
        api.ItemPushChoicesView.as_view(),
        name="supervisor-item-eligible-agents",
    ),
    path(
        "supervisor/work/<int:work_id>/transfer/",
        api.WorkTransferActionView.as_view(),
        name="supervisor-work-transfer",
    ),
    path(
        "supervisor/items/<int:item_id>/push/",
        api.ItemPushActionView.as_view(),
        name="supervisor-item-push",
    ),
]
