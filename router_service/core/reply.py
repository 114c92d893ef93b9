"""What the router does with one HTTP request, independent of the transport that carries it.

`RequestRouter.handle` (`router_service.router`) takes a `ParsedRequest` and returns either an `Answer` (the router
answers the client itself: an error, a refusal, a cache hit, the model list) or a `Forward` (the request goes
upstream, with these mutations, and its response phase needs these parts). The ExtProc server speaks a reply as
protobuf mutations or an ImmediateResponse, the direct proxy as an httpx request or a Starlette response.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context

from router_service.core.path_table import PROMPT_PATHS
from router_service.core.pii_masking import Masking, ResponseRestorer
from router_service.core.render import JSON, openai_error, retry_after_header
from router_service.errors import RouterError

__all__ = [
    "Answer",
    "CacheScope",
    "Forward",
    "ParsedRequest",
    "Reply",
    "error_answer",
    "error_type",
    "router_error_answer",
    "wants_body",
]


def wants_body(method: str, path: str) -> bool:
    """Whether the router reads this request's body: a POST to a prompt path (`path_table`). Every other request
    is answered on its headers alone."""
    return method == "POST" and path in PROMPT_PATHS


@dataclass(frozen=True)
class ParsedRequest:
    """One HTTP request as the transports see it: `headers` lower-cased; `body` None when the request has none."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes | None = None


@dataclass(frozen=True)
class Answer:
    """The router answers the client itself. `details` names the answer (Envoy logs it as the local reply's
    details); `streamed`: the body is an SSE stream (sent whole)."""

    status: int
    headers: dict[str, str]
    body: bytes
    content_type: str
    details: str

    @property
    def streamed(self) -> bool:
        return self.content_type.startswith("text/event-stream")


@dataclass(frozen=True)
class CacheScope:
    """What a later store needs: the lookup key of this request."""

    prompt: str
    embedding: Any
    model: str
    fingerprint: str
    tenant: str | None


@dataclass(frozen=True)
class Forward:
    """Send the request upstream.

    `body` replaces the client's body (None: the client's goes unchanged); `upstream_headers` are set on the
    upstream request. The response phase adds `response_headers`, restores masked PII (`restorer`) and, when
    `tracked` (the chat path), records the endpoint's health, fails over to `candidates`, accounts the response
    and stores it in the semantic cache under `store_scope`.
    """

    body: dict[str, Any] | None = None
    upstream_headers: dict[str, str] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)
    model: str = ""
    endpoint: str = ""
    candidates: tuple[tuple[str, str], ...] = ()
    tracked: bool = False
    masking: Masking | None = None
    store_scope: CacheScope | None = None
    trace_context: Context | None = None
    """The context of the request's span: the parent of the upstream call's."""

    def body_for(self, model: str) -> dict[str, Any]:
        """The upstream body for one candidate model (failover sends the same body under another `model`)."""
        return dict(self.body or {}, model=model)

    def restorer(self, status: int, content_type: str) -> ResponseRestorer | None:
        """A restorer when the request was masked with `restore` and the backend answered with a success."""
        if self.masking is None or not self.masking.restore or not 200 <= status < 300:
            return None
        return ResponseRestorer(self.masking, sse=content_type.startswith("text/event-stream"))


Reply = Answer | Forward


def error_type(status: int) -> str:
    """OpenAI's error `type` for a status: the client's fault below 500, the server's from 500."""
    return "invalid_request_error" if status < 500 else "server_error"


def error_answer(
    status: int, message: str, code: str, *, param: str | None = None, headers: Mapping[str, str] | None = None
) -> Answer:
    """An OpenAI-style error answer; `code` also names it in `details`."""
    status, body = openai_error(status, message, error_type(status), code, param)
    return Answer(status, dict(headers or {}), body, JSON, code)


def router_error_answer(e: RouterError) -> Answer:
    """A `RouterError` as the client sees it: its status, type and code, `param` when it names one, and
    `Retry-After` when it asks the client to wait."""
    headers = {"retry-after": retry_after_header(e.retry_after_s)} if e.retry_after_s is not None else {}
    status, body = openai_error(e.status, e.message, e.error_type, e.code, getattr(e, "param", None))
    return Answer(status, headers, body, JSON, e.code)
