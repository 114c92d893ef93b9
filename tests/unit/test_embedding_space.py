"""Cache entries are scoped to the signals model's build (its embedding space)."""

from __future__ import annotations

from cache_service.scope import fingerprint
from router_service.router import in_embedding_space


def test_the_same_request_under_two_builds_has_two_scopes() -> None:
    body = {"model": "MoM", "messages": [{"role": "user", "content": "What is entropy?"}]}
    base = fingerprint(body)
    one, other = in_embedding_space(base, "8f5aac2d0d2ac898"), in_embedding_space(base, "0123456789abcdef")
    assert one != other
    assert one == in_embedding_space(fingerprint(dict(body)), "8f5aac2d0d2ac898")  # stable for one build
    assert len(one) == len(base) and int(one, 16) >= 0  # same shape as a body fingerprint (hex)


def test_different_requests_stay_apart_under_one_build() -> None:
    a = {"model": "MoM", "messages": [{"role": "user", "content": "q"}], "temperature": 0}
    b = {"model": "MoM", "messages": [{"role": "user", "content": "q"}], "temperature": 1}
    assert in_embedding_space(fingerprint(a), "k") != in_embedding_space(fingerprint(b), "k")
