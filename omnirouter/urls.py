from django.contrib import admin
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog

from routing import views as routing_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("demo/", routing_views.demo, name="demo"),
    path("", include("presence.urls")),
]
