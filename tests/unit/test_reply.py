"""The transport-neutral reply: body parsing errors and the one error mapping both transports speak."""

from __future__ import annotations

import json

import pytest

from router_service.core.decision import parse_body
from router_service.core.reply import error_answer, router_error_answer, wants_body
from router_service.errors import (
    BodyTooLarge,
    ClassifierOverloaded,
    InvalidBody,
    InvalidEncoding,
    InvalidJson,
    InvalidRequest,
    RateLimited,
    RouterError,
    UpstreamUnavailable,
)


@pytest.mark.parametrize(
    ("raw", "error", "status", "code"),
    [
        (None, InvalidJson, 400, "invalid_json"),
        (b"", InvalidJson, 400, "invalid_json"),
        (b'{"model": ', InvalidJson, 400, "invalid_json"),
        (b"[" * 100 + b"]" * 100, InvalidJson, 400, "invalid_json"),
        (b"[1, 2]", InvalidBody, 400, "invalid_body"),
        (b'{"x": "' + b"a" * 100 + b'"}', BodyTooLarge, 413, "body_too_large"),
    ],
    ids=["none", "empty", "not-json", "too-deep", "not-an-object", "too-large"],
)
def test_parse_body_errors(raw: bytes | None, error: type[InvalidRequest], status: int, code: str) -> None:
    with pytest.raises(error) as info:
        parse_body(raw, max_bytes=50 if error is BodyTooLarge else 1 << 20, expected="a JSON request")
    answer = router_error_answer(info.value)
    assert (answer.status, answer.details, answer.content_type) == (status, code, "application/json")
    assert json.loads(answer.body)["error"] == {
        "message": info.value.message,
        "type": "invalid_request_error",
        "code": code,
        "param": None,
    }


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b'{"model": "MoM", "messages": "\xff"}', "byte 0xff at offset 30"),
        (b'{"a": "caf\xc3"}', "byte 0xc3 at offset 10"),  # a sequence cut short
        (b'{"a": "\xed\xa0\x80"}', "byte 0xed at offset 7"),  # a surrogate encoded as UTF-8 (CESU-8)
        (b'{"a": "\xc0\xaf"}', "byte 0xc0 at offset 7"),  # an overlong form
        (b"\xff\xfe{\x00}\x00", "byte 0xff at offset 0"),  # UTF-16: JSON between systems is UTF-8
    ],
)
def test_a_body_that_is_not_utf8_is_a_400_saying_where(raw: bytes, where: str) -> None:
    with pytest.raises(InvalidEncoding) as info:
        parse_body(raw, max_bytes=1 << 20, expected="a JSON request")
    answer = router_error_answer(info.value)
    assert (answer.status, answer.details) == (400, "invalid_utf8")
    assert where in json.loads(answer.body)["error"]["message"]


@pytest.mark.parametrize("raw", [b'{"a": NaN}', b'{"a": -Infinity}', b'{"a": 1e309}', b'{"a": ' + b"9" * 5000 + b"}"])
def test_numbers_other_parsers_refuse_are_invalid_json(raw: bytes) -> None:
    with pytest.raises(InvalidJson):
        parse_body(raw, max_bytes=1 << 20, expected="a JSON request")


def test_a_byte_order_mark_is_skipped() -> None:
    assert parse_body(b'\xef\xbb\xbf{"a": 1.5}', max_bytes=100, expected="x") == {"a": 1.5}


def test_parse_body_returns_the_object() -> None:
    assert parse_body(b'{"model": "MoM"}', max_bytes=100, expected="x") == {"model": "MoM"}


@pytest.mark.parametrize(
    ("error", "status", "kind", "retry_after"),
    [
        (InvalidRequest("bad", "messages[0]"), 400, "invalid_request_error", None),
        (RateLimited("slow down", 0.2), 429, "requests", "1"),
        (ClassifierOverloaded("full"), 503, "server_error", "1"),
        (UpstreamUnavailable("down"), 502, "server_error", None),
        (RouterError("oops"), 500, "server_error", None),
    ],
)
def test_router_errors_map_through_their_attributes(
    error: RouterError, status: int, kind: str, retry_after: str | None
) -> None:
    answer = router_error_answer(error)
    body = json.loads(answer.body)["error"]
    assert (answer.status, body["type"], body["code"], answer.headers.get("retry-after")) == (
        status,
        kind,
        error.code,
        retry_after,
    )
    assert body["param"] == getattr(error, "param", None)


def test_error_type_is_the_clients_below_500() -> None:
    assert json.loads(error_answer(405, "no", "method_not_allowed").body)["error"]["type"] == "invalid_request_error"
    assert json.loads(error_answer(502, "no", "upstream_unavailable").body)["error"]["type"] == "server_error"


@pytest.mark.parametrize(
    ("method", "path", "wanted"),
    [
        ("POST", "/v1/chat/completions", True),
        ("POST", "/v1/responses", True),
        ("GET", "/v1/chat/completions", False),
        ("POST", "/v1/embeddings", False),
    ],
)
def test_wants_body(method: str, path: str, wanted: bool) -> None:
    assert wants_body(method, path) is wanted
