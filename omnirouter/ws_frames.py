"""JSON WebSocket frames, checked before a consumer sees them.

A frame that is not JSON text, holds a NUL byte or nests deeper than ``INPUT_MAX_JSON_DEPTH``
(``omnirouter.inputs``) is answered with an error frame naming the problem, and the socket stays
open: a bad frame used to raise inside the consumer, and Channels closed the socket with 1011.
Every consumer of the product derives from ``CheckedJsonConsumer``.
"""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext as _

from omnirouter import inputs


class CheckedJsonConsumer(AsyncJsonWebsocketConsumer):
    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        language = getattr(self, "language", None) or settings.LANGUAGE_CODE
        with translation.override(language):
            if text_data is None:
                await self.send_frame_error("bad_json", _("Messages must be JSON text."))
                return
            try:
                content = inputs.loads(text_data)
            except inputs.UnsafeInput as exc:
                await self.send_frame_error("bad_input", f"{exc.field}: {exc.message}")
                return
            except ValueError:
                await self.send_frame_error("bad_json", _("Messages must be JSON text."))
                return
            await self.receive_json(content, **kwargs)

    async def send_frame_error(self, code: str, message: str) -> None:
        """The error frame every socket of the product sends (``ref`` is null: a frame that did
        not parse has none)."""
        await self.send_json({"type": "error", "ref": None, "code": code, "message": message})
