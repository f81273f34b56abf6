from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"

    def ready(self) -> None:
        # Embedded runs have no Celery beat: the in-process routing loop forgets old intake
        # idempotency keys (it only runs periodic jobs once started, i.e. in embedded mode).
        from routing import runner
        from routing.services import purge_intake_requests

        runner.register_periodic(
            "routing.purge_idempotency_keys", 3600, lambda: purge_intake_requests()
        )
