from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Demo data, the traffic simulators and ``manage.py rundemo`` (the embedded run). Nothing in
    the product imports this app; it uses the product's services as a user would."""

    name = "demo"
