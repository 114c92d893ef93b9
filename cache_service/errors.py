"""One root error for the cache service; redis errors are wrapped here, at the boundary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis.exceptions

__all__ = [
    "AuthError",
    "CacheError",
    "CacheTimeoutError",
    "CacheUnavailableError",
    "IndexMissingError",
    "InvalidRequestError",
    "PayloadTooLargeError",
    "redis_errors",
]


class CacheError(Exception):
    """Root of every error the cache service raises on purpose."""

    status_code = 500
    error_type = "server_error"
    code = "cache_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidRequestError(CacheError):
    """The request is malformed: bad JSON, a missing field, a vector of the wrong size."""

    status_code = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.code = code


class PayloadTooLargeError(InvalidRequestError):
    status_code = 413

    def __init__(self, message: str) -> None:
        super().__init__(message, code="payload_too_large")


class AuthError(CacheError):
    """A write or admin request without the admin token (401) or with a wrong one (403)."""

    error_type = "authentication_error"
    code = "invalid_admin_token"

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


class CacheUnavailableError(CacheError):
    """Redis is down, slow or refused the command: callers proceed uncached."""

    status_code = 503
    error_type = "service_unavailable"
    code = "cache_unavailable"


class CacheTimeoutError(CacheUnavailableError):
    """Redis did not answer within the operation's deadline."""

    code = "cache_timeout"


class IndexMissingError(CacheUnavailableError):
    """The vector index is gone (Redis restarted empty); it is being re-created."""

    code = "cache_index_missing"


def _is_missing_index(err: redis.exceptions.ResponseError) -> bool:
    text = str(err).lower()
    return "no such index" in text or "unknown index name" in text


@contextmanager
def redis_errors(operation: str) -> Iterator[None]:
    """Map every redis-py error raised inside the block to a `CacheError`, keeping the cause."""
    try:
        yield
    except redis.exceptions.ResponseError as e:
        if _is_missing_index(e):
            raise IndexMissingError(f"{operation}: index missing") from e
        raise CacheUnavailableError(f"{operation}: redis refused the command: {e}") from e
    except TimeoutError as e:  # asyncio.timeout() around the call (TimeoutError is also an OSError)
        raise CacheTimeoutError(f"{operation}: redis timed out") from e
    except (redis.exceptions.RedisError, OSError) as e:
        raise CacheUnavailableError(f"{operation}: redis unavailable: {type(e).__name__}: {e}") from e
