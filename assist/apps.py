from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AssistConfig(AppConfig):
    name = "assist"
    verbose_name = _("Assistance")

    def ready(self) -> None:
        # Classification rules may ask what the model predicts (``model.queue``,
        # ``model.confidence``); routing imports nothing of this app.
        from assist.predict import guess_for_rules
        from routing.services.records import register_prediction

        register_prediction(guess_for_rules)
