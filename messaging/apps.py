from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"

    def ready(self) -> None:
        # Conversations and cases follow their work items in routing's transaction.
        from messaging.services import register_routing_hooks

        register_routing_hooks()
