from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SupervisorConfig(AppConfig):
    name = "supervisor"
    verbose_name = _("Supervisor")
