"""Demo URLs: the guide and simulator switch, and the demo shop with the web-chat widget."""

from django.urls import path

from demo import views

urlpatterns = [
    path("demo/", views.demo, name="demo"),
    path("demo/shop/", views.demo_shop, name="demo-shop"),
]
