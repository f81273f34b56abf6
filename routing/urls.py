"""Routing URLs. ``api_urlpatterns`` are mounted under /api/ by ``omnirouter.urls``."""

from rest_framework.routers import SimpleRouter

from routing import api

router = SimpleRouter()
router.register("channels", api.ServiceChannelViewSet, basename="channel")
router.register("routing-configs", api.RoutingConfigurationViewSet, basename="routing-config")
router.register("queues", api.QueueViewSet, basename="queue")
router.register(
    "classification-rules", api.ClassificationRuleViewSet, basename="classification-rule"
)
router.register("exception-rules", api.ExceptionRuleViewSet, basename="exception-rule")
router.register("skills", api.SkillViewSet, basename="skill")
router.register("agent-skills", api.AgentSkillViewSet, basename="agent-skill")
router.register("work-items", api.WorkItemViewSet, basename="work-item")
router.register("agent-work", api.AgentWorkViewSet, basename="agent-work")

api_urlpatterns = router.urls
