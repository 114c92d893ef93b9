"""Error types of the router service.

One root, :class:`RouterError`, so callers can catch everything the service raises on purpose, and
one place (the HTTP/ExtProc layer) maps an error to a response through the three class attributes
``status``, ``error_type`` and ``code`` instead of a table of ``isinstance`` checks. New errors
subclass the root (or a subclass) and override those attributes.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "BodyTooLarge",
    "ClassifierOverloaded",
    "ClassifierUnavailable",
    "ConfigError",
    "InvalidBody",
    "InvalidEncoding",
    "InvalidJson",
    "InvalidRequest",
    "RateLimited",
    "RouterError",
    "UpstreamUnavailable",
]


class RouterError(Exception):
    """Root of every error the router service raises deliberately.

    The class attributes say how the error reaches a client: an HTTP status and the OpenAI error
    ``type``/``code``. The default is a server error, because anything not classified as the
    client's fault is ours.
    """

    status: int = 500
    error_type: str = "server_error"
    code: str = "internal_error"
    retry_after_s: float | None = None
    """Seconds a client should wait before retrying (sent as `Retry-After`); None: no such header."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ConfigError(RouterError):
    """The router configuration (or a file it names) is invalid.

    Carries every problem found, one line each with the key path (``categories[3].model_scores[0].score:
    ...``), so an operator fixes the file in one pass instead of one error per reload.
    """

    code = "invalid_config"

    def __init__(self, messages: Iterable[str], source: str | None = None) -> None:
        self.messages: tuple[str, ...] = tuple(messages) or ("invalid configuration",)
        self.source = source
        head = f"invalid router config {source}" if source else "invalid router config"
        super().__init__(head + ":\n" + "\n".join(f"  {m}" for m in self.messages))

    def __repr__(self) -> str:
        return f"ConfigError(source={self.source!r}, messages={self.messages!r})"


class InvalidRequest(RouterError):
    """The client's request body is malformed; always a 400, never a 500.

    ``param`` names the offending field the way OpenAI does (``messages[2].content``).
    """

    status = 400
    error_type = "invalid_request_error"
    code = "invalid_request"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param

    def __repr__(self) -> str:
        return f"InvalidRequest({self.message!r}, param={self.param!r})"


class InvalidJson(InvalidRequest):
    """The request body is empty, not JSON, or nested deeper than the router reads."""

    code = "invalid_json"


class InvalidEncoding(InvalidJson):
    """The request body is not UTF-8 (JSON between systems is UTF-8, RFC 8259): raw bytes that decode to nothing,
    or to a lone surrogate. Refused whole: a body is never forwarded with bytes the router could not read."""

    code = "invalid_utf8"


class InvalidBody(InvalidRequest):
    """The request body is JSON but not an object."""

    code = "invalid_body"


class BodyTooLarge(InvalidRequest):
    """The request body is larger than the router reads (`Settings.max_body_bytes`)."""

    status = 413
    code = "body_too_large"


class ClassifierUnavailable(RouterError):
    """Triton (the signals model) could not answer in time; the decision applies its failure policy."""

    status = 503
    error_type = "server_error"
    code = "classifier_unavailable"


class ClassifierOverloaded(ClassifierUnavailable):
    """The classification queue is full: the request is shed at once instead of queueing to Triton's timeout."""

    code = "classifier_overloaded"
    retry_after_s = 1.0


class RateLimited(RouterError):
    """The tenant is over its request rate (`triton_router.rate_limit`)."""

    status = 429
    error_type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UpstreamUnavailable(RouterError):
    """A backend endpoint could not be reached or failed before its first byte (failover may try the next).

    ``upstream_status`` is the backend's own 5xx, or None when there was no answer (refused, reset, timed out)."""

    status = 502
    error_type = "server_error"
    code = "upstream_unavailable"

    def __init__(self, message: str, upstream_status: int | None = None) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status
