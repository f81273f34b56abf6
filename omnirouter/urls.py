from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from assist.urls import api_urlpatterns as assist_api
from omnirouter import views as platform_views
from presence.urls import api_urlpatterns as presence_api
from routing.urls import api_urlpatterns as routing_api
from supervisor.urls import api_urlpatterns as supervisor_api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI's start-up script as its own request (no inline script, see settings' CSP).
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api-schema", template_name="api/swagger_ui.html"
        ),
        name="api-docs",
    ),
    # Redoc writes its styles into <style> elements and renders in a blob: worker.
    path(
        "api/docs/redoc/",
        csp_update({"style-src": [UNSAFE_INLINE], "worker-src": ["blob:"]})(
            SpectacularRedocView.as_view(url_name="api-schema", template_name="api/redoc.html")
        ),
        name="api-redoc",
    ),
    path("api/auth/token/", platform_views.ObtainTokenView.as_view(), name="api-token"),
    path("api/auth/", include("rest_framework.urls")),
    path("api/", include([*routing_api, *presence_api, *supervisor_api, *assist_api])),
    path("accounts/", include("django.contrib.auth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("", include("demo.urls")),
    path("healthz", platform_views.healthz, name="healthz"),
    path("readyz", platform_views.ReadinessView.as_view(), name="readyz"),
    path("metrics", platform_views.metrics_view, name="metrics"),
    path("", include("messaging.urls")),
    path("", include("presence.urls")),
    path("", include("supervisor.urls")),
]

handler404 = "omnirouter.views.not_found"
