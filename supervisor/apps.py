from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SupervisorConfig(AppConfig):
    name = "supervisor"
    verbose_name = _("Supervisor")

    def ready(self) -> None:
        # Embedded runs have no Celery beat: the in-process routing loop takes the trend samples
        # (it only runs them once started, i.e. in embedded mode). Celery beat does it otherwise.
        from django.conf import settings

        from routing import runner
        from supervisor.services import record_queue_samples

        runner.register_periodic(
            "supervisor.sample_queues",
            settings.SUPERVISOR_SAMPLE_INTERVAL_SECONDS,
            lambda: record_queue_samples(),
        )
