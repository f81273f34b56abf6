from django.urls import path

from presence import views

urlpatterns = [
    path("", views.home, name="home"),
    path("console/", views.console, name="console"),
]
