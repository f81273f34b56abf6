"""Errors raised by routing services; every interface maps them to a clear message."""


class RoutingError(Exception):
    """A request the routing rules refuse. ``code`` is stable, ``message`` is for people."""

    http_status = 400

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class NotFound(RoutingError):
    http_status = 404


class Forbidden(RoutingError):
    http_status = 403


class Conflict(RoutingError):
    """The state moved on: already accepted, expired, no longer yours."""

    http_status = 409
