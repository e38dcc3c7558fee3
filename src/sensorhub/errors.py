"""One error hierarchy; :mod:`sensorhub.app` renders it in one wire shape per API family.

Services raise these; endpoints never build error responses by hand.
"""

from __future__ import annotations


class SensorhubError(Exception):
    status: int = 500
    error: str = "Internal Server Error"
    # NGSI-LD ProblemDetails type suffix (https://uri.etsi.org/ngsi-ld/errors/<type>).
    ngsi_type: str = "InternalError"
    code: str = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(SensorhubError):
    status = 400
    error = "Bad Request"
    ngsi_type = "BadRequestData"
    code = "bad_request"


class InvalidRequest(BadRequest):
    """A malformed request: a query expression, an unknown ``options`` or ``format`` value (ETSI type
    ``InvalidRequest``, 400)."""

    ngsi_type = "InvalidRequest"


class Unauthorized(SensorhubError):
    status = 401
    error = "Unauthorized"
    ngsi_type = "Unauthorized"  # not an ETSI type, but ProblemDetails still applies
    code = "invalid_token"


class Forbidden(SensorhubError):
    status = 403
    error = "Forbidden"
    ngsi_type = "PermissionDenied"
    code = "forbidden"


class InsufficientScope(Forbidden):
    code = "insufficient_scope"

    def __init__(self, scope: str) -> None:
        super().__init__(
            f"Permission denied: this route needs the '{scope}' scope, which this credential does not have",
            headers={
                "WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"',
            },
        )
        self.scope = scope
        self.scope = scope


class NotFound(SensorhubError):
    status = 404
    error = "Not Found"
    ngsi_type = "ResourceNotFound"
    code = "not_found"


class MethodNotAllowed(SensorhubError):
    status = 405
    error = "Method Not Allowed"
    ngsi_type = "OperationNotSupported"
    code = "method_not_allowed"


class Conflict(SensorhubError):
    status = 409
    error = "Conflict"
    ngsi_type = "AlreadyExists"
    code = "conflict"


class Gone(SensorhubError):
    status = 410
    error = "Gone"
    ngsi_type = "ResourceNotFound"
    code = "gone"


class PayloadTooLarge(SensorhubError):
    status = 413
    error = "Payload Too Large"
    ngsi_type = "RequestEntityTooLarge"
    code = "payload_too_large"


class UnsupportedMediaType(SensorhubError):
    status = 415
    error = "Unsupported Media Type"
    ngsi_type = "UnsupportedMediaType"
    code = "unsupported_media_type"


class NotImplementedFeature(SensorhubError):
    """A request feature the standard defines and this server does not implement (ETSI ``NotImplemented``)."""

    status = 501
    error = "Not Implemented"
    ngsi_type = "NotImplemented"
    code = "not_implemented"


class TooManyResults(Forbidden):
    """More results per page than the server hands out (ETSI ``TooManyResults``, 403)."""

    ngsi_type = "TooManyResults"
    code = "too_many_results"


class NotAcceptable(SensorhubError):
    status = 406
    error = "Not Acceptable"
    ngsi_type = "NotAcceptable"
    code = "not_acceptable"


class RateLimited(SensorhubError):
    status = 429
    error = "Too Many Requests"
    ngsi_type = "TooManyRequests"
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int, headers: dict[str, str] | None = None) -> None:
        h = {"Retry-After": str(max(1, retry_after))}
        h.update(headers or {})
        super().__init__(message, headers=h)
        self.retry_after = retry_after


class ServiceUnavailable(SensorhubError):
    status = 503
    error = "Service Unavailable"
    ngsi_type = "InternalError"
    code = "unavailable"
