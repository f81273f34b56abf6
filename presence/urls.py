from django.urls import path
from rest_framework.routers import SimpleRouter

from presence import api, views

urlpatterns = [
    path("", views.home, name="home"),
    path("console/", views.console, name="console"),
]

# Mounted under /api/ by omnirouter.urls.
api_router = SimpleRouter()
api_router.register("presence-statuses", api.PresenceStatusViewSet, basename="presence-status")
api_router.register(
    "presence-configs", api.PresenceConfigurationViewSet, basename="presence-config"
)
api_router.register("agents", api.AgentViewSet, basename="agent")
api_router.register("decline-reasons", api.DeclineReasonViewSet, basename="decline-reason")

api_urlpatterns = [
    *api_router.urls,
    path("me/presence/", api.MyPresenceView.as_view(), name="my-presence"),
    path("me/work/", api.MyWorkView.as_view(), name="my-work"),
    path("me/statuses/", api.MyStatusesView.as_view(), name="my-statuses"),
]
