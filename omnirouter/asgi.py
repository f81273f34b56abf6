"""ASGI entry point: HTTP through Django; WebSockets through Channels (authenticated)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omnirouter.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from omnirouter.origins import StaffOriginValidator  # noqa: E402
from omnirouter.ws_urls import (  # noqa: E402
    customer_websocket_urlpatterns,
    websocket_urlpatterns,
)

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(
            [
                *customer_websocket_urlpatterns,
                re_path(
                    r"^",
                    StaffOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
                ),
            ]
        ),
    }
)
