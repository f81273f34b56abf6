"""The domain error every service raises when its rules refuse a request; every interface (API,
admin, forms, sockets) maps it to a clear message and status."""


class DomainError(Exception):
    """A request the product's rules refuse. ``code`` is stable, ``message`` is for people."""

    http_status = 400

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class NotFound(DomainError):
    http_status = 404


class Forbidden(DomainError):
    http_status = 403


class Conflict(DomainError):
    """The state moved on: already accepted, expired, no longer yours."""

    http_status = 409
