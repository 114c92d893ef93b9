"""Request bodies of the HTTP API (pydantic); responses are built in `app.py`."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from cache_service.errors import InvalidRequestError

__all__ = ["InvalidateRequest", "LookupRequest", "StoreRequest", "parse"]


def _utf8(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError("must be valid UTF-8 text (no lone surrogates)") from e
    return value


def _no_control_chars(value: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("must not contain control characters")
    return _utf8(value)


Name = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_no_control_chars)]
Text = Annotated[str, Field(min_length=1), AfterValidator(_utf8)]
"""A model name, fingerprint or tenant: stored as a TAG value."""

Embedding = str | Annotated[list[float], Field(min_length=1, max_length=8192)]
"""Base64 of little-endian float32 (what `CacheClient` sends), or a JSON list of numbers."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Scoped(_Body):
    prompt: Text
    embedding: Embedding
    model: Name
    fingerprint: Name
    tenant: Name | None = None


class LookupRequest(_Scoped):
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    """Cosine similarity in [0, 1] needed to hit; higher is stricter. Default: the service's."""
    ef_runtime: int | None = Field(default=None, ge=1, le=4096)


class StoreRequest(_Scoped):
    response: dict[str, Any]
    """The complete chat.completion to replay on a hit."""
    ttl_seconds: int | None = Field(default=None, ge=1)


class InvalidateRequest(_Body):
    entry_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    prompt: Text | None = None
    """With model + fingerprint (+ tenant): delete that exact entry."""
    model: Name | None = None
    fingerprint: Name | None = None
    tenant: Name | None = None
    all: bool = False
    """Delete every entry."""


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], raw: bytes) -> M:
    """Parse and validate a JSON body in one pass; the first problem becomes a 400 naming the field."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        if first.get("type") == "json_invalid":
            if not _is_utf8(raw):
                raise InvalidRequestError("the body is not valid UTF-8", code="invalid_utf8") from e
            raise InvalidRequestError("the body is not valid JSON", code="invalid_json") from e
        if first.get("type") == "model_type" and not first.get("loc"):
            raise InvalidRequestError("the body must be a JSON object", code="invalid_body") from e
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise InvalidRequestError(f"{where}: {first.get('msg', 'invalid')}", code="invalid_field") from e


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
