"""Pure parts of the reliability and security work: the admin token, the per-tenant rate limiter, the guarded
completions/responses views, and the stack supervisor (on a real child process)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from cache_service.auth import ENV_VAR, AuthFailure, check_bearer, resolve_admin_token
from local_stack.components import ManagedProcess
from local_stack.supervisor import Supervisor, read_supervisor_state
from router_service.config import RateLimitConfig, RouterConfig
from router_service.core.decision import load_body, plan_request
from router_service.core.decision_types import CachePolicy, Routed
from router_service.core.prompt_paths import as_chat
from router_service.core.render import retry_after_header
from router_service.endpoint_health import EndpointHealth
from router_service.errors import InvalidRequest
from router_service.ratelimit import TenantRateLimiter
from router_service.router import skip_unhealthy

# --- admin token ---------------------------------------------------------------------------------------------


def test_admin_token_is_generated_once_into_the_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    first = resolve_admin_token(None, tmp_path)
    assert len(first) >= 32
    assert resolve_admin_token(None, tmp_path) == first  # the second process reads the same file
    assert (tmp_path / "admin_token").stat().st_mode & 0o777 == 0o600
    assert list(tmp_path.iterdir()) == [tmp_path / "admin_token"]  # no temporary file left behind


def test_admin_token_env_wins_over_config_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_admin_token("from-config", tmp_path) == "from-config"
    monkeypatch.setenv(ENV_VAR, "from-env")
    assert resolve_admin_token("from-config", tmp_path) == "from-env"
    assert not (tmp_path / "admin_token").exists()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"authorization": "Basic x"}, 401),
        ({"authorization": "Bearer "}, 401),
        ({"authorization": "Bearer no"}, 403),
    ],
)
def test_bearer_check_refuses(headers: dict[str, str], status: int) -> None:
    with pytest.raises(AuthFailure) as err:
        check_bearer(headers, "s3cret")
    assert err.value.status == status


def test_bearer_check_accepts_the_token() -> None:
    check_bearer({"authorization": "Bearer s3cret"}, "s3cret")
    check_bearer({"authorization": "bearer s3cret"}, "s3cret")


# --- rate limit ----------------------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_is_per_tenant_with_burst_and_refill() -> None:
    clock = _Clock()
    limiter = TenantRateLimiter(RateLimitConfig(enabled=True, requests_per_second=2, burst=3), clock)
    assert [limiter.acquire("a") for _ in range(3)] == [None, None, None]
    wait = limiter.acquire("a")
    assert wait == pytest.approx(0.5)
    assert retry_after_header(wait) == "1"
    assert limiter.acquire("b") is None  # another tenant has its own bucket
    clock.now += 0.5
    assert limiter.acquire("a") is None  # one token back after 1 / rate seconds
    assert limiter.acquire("a") is not None


def test_rate_limit_buckets_are_bounded() -> None:
    limiter = TenantRateLimiter(RateLimitConfig(enabled=True, max_tenants=100), _Clock())
    for i in range(1000):
        limiter.acquire(f"tenant-{i}")
    assert len(limiter) == 100


# --- completions / responses as chat -------------------------------------------------------------------------


def test_completions_prompts_become_user_messages() -> None:
    view = as_chat("completions", {"model": "MoM", "prompt": ["a", "b"], "stream": True})
    assert view == {
        "model": "MoM",
        "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        "stream": True,
    }


def test_responses_input_items_become_messages() -> None:
    body = {
        "model": "MoM",
        "instructions": "be brief",
        "input": [
            {"role": "developer", "content": "rules"},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}, {"type": "input_image"}],
            },
            {"type": "function_call_output", "call_id": "1", "output": "42"},
        ],
    }
    assert as_chat("responses", body)["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "system", "content": "rules"},
        {"role": "user", "content": "hi"},
    ]
    assert as_chat("responses", {"model": "m", "input": "x"})["messages"] == [{"role": "user", "content": "x"}]


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("completions", {"model": "m"}),
        ("completions", {"model": "m", "prompt": [1, 2, 3]}),
        ("completions", {"model": "m", "prompt": 5}),
        ("responses", {"model": "m", "input": 5}),
        ("responses", {"model": "m", "input": [5]}),
        ("responses", {"model": "m", "input": [{"role": "alien", "content": "x"}]}),
        ("responses", {"model": "m", "input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]}),
        ("responses", {"model": "m", "input": []}),
    ],
)
def test_bad_completions_and_responses_bodies_are_invalid_requests(kind: str, body: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        as_chat(kind, body)


# --- supervisor ----------------------------------------------------------------------------------------------


def _wait(predicate: object, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_supervisor_restarts_a_killed_process_and_leaves_a_stopped_one(tmp_path: Path) -> None:
    proc = ManagedProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "logs" / "s.log")
    proc.start()
    first_pid = proc.pid
    sup = Supervisor([proc], tmp_path, poll_s=0.05, first_backoff_s=0.1).start()
    try:
        os.kill(first_pid, signal.SIGKILL)
        assert _wait(lambda: proc.alive() and proc.pid != first_pid)
        assert _wait(lambda: read_supervisor_state(tmp_path).get("sleeper", {}).get("restarts") == 1)
        state = read_supervisor_state(tmp_path)["sleeper"]
        assert state["last_exit_code"] == -signal.SIGKILL
        assert state["pid"] == proc.pid
        assert "restarted" in (tmp_path / "logs" / "supervisor.log").read_text()
        proc.stop()  # on purpose: stays down
        time.sleep(0.5)
        assert not proc.alive()
    finally:
        sup.stop()
        proc.stop()


def test_supervisor_backs_off_exponentially(tmp_path: Path) -> None:
    proc = ManagedProcess("crasher", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "logs" / "c.log")
    proc.start()
    sup = Supervisor([proc], tmp_path, poll_s=0.02, first_backoff_s=0.2, max_backoff_s=0.8).start()
    try:
        time.sleep(2.0)
        restarts = int(read_supervisor_state(tmp_path)["crasher"]["restarts"])  # type: ignore[call-overload]
        # 0.2 + 0.4 + 0.8 + 0.8 ... : about 3-4 restarts in 2 s, not 100
        assert 2 <= restarts <= 5, restarts
        assert read_supervisor_state(tmp_path)["crasher"]["last_exit_code"] == 3
    finally:
        sup.stop()
        proc.stop()


# --- passive endpoint health ---------------------------------------------------------------------------------


def test_a_500_counts_once_per_distinct_request_and_unwell_statuses_always() -> None:
    health = EndpointHealth(failure_threshold=3, cooldown_s=60.0, clock=_Clock())
    bad = {"model": "m", "messages": [{"role": "user", "content": "a request the backend fails on"}]}
    for _ in range(10):  # one bad request, retried: says nothing about the endpoint
        health.record_status("a:1", 500, bad)
    assert health.healthy("a:1")
    for i in range(2):  # the same failure for different requests: the endpoint is unwell
        health.record_status("a:1", 500, {**bad, "n": i})
    assert not health.healthy("a:1")
    for status in (502, 503, 504):
        health.record_status("b:1", status, bad)
    assert not health.healthy("b:1")
    health.record_status("c:1", 500, bad)
    health.record_status("c:1", 500, {**bad, "n": 1})
    health.record_status("c:1", 400, bad)  # an answer below 500 ends the streak
    health.record_status("c:1", 500, {**bad, "n": 2})
    assert health.healthy("c:1")


def test_endpoint_breaker_opens_after_repeated_failures_and_half_opens_after_cooldown() -> None:
    clock = _Clock()
    health = EndpointHealth(failure_threshold=2, cooldown_s=5.0, clock=clock)
    health.record_failure("a:1")
    assert health.healthy("a:1")  # one failure is not a pattern
    health.record_failure("a:1")
    assert not health.healthy("a:1")
    assert health.healthy("b:1")
    clock.now += 5.0
    assert health.healthy("a:1")  # half-open: one probe goes through ...
    assert not health.healthy("a:1")  # ... the others still skip it
    health.record_success("a:1")
    assert health.healthy("a:1")


def _routed(model: str, endpoint: str, candidates: tuple[tuple[str, str], ...]) -> Routed:
    return Routed(
        model=model,
        endpoint=endpoint,
        category="math",
        confidence=0.9,
        reasoning=False,
        injected_system_prompt=False,
        body={"model": model, "messages": []},
        upstream_headers={"x-vsr-destination-endpoint": endpoint, "x-selected-model": model},
        response_headers={"x-vsr-selected-model": model},
        candidates=candidates,
        cache=CachePolicy(enabled=False, threshold=0.8),
    )


def test_an_ejected_endpoint_is_skipped_for_the_next_healthy_candidate() -> None:
    health = EndpointHealth(failure_threshold=1, cooldown_s=60)
    decision = _routed("big", "10.0.0.1:8000", (("mid", "10.0.0.2:8000"), ("small", "10.0.0.3:8000")))
    assert skip_unhealthy(decision, health) is decision
    health.record_failure("10.0.0.1:8000")
    moved = skip_unhealthy(decision, health)
    assert (moved.model, moved.endpoint, moved.candidates) == ("mid", "10.0.0.2:8000", (("small", "10.0.0.3:8000"),))
    assert moved.body["model"] == "mid"
    assert moved.upstream_headers == {"x-vsr-destination-endpoint": "10.0.0.2:8000", "x-selected-model": "mid"}
    assert moved.response_headers["x-vsr-selected-model"] == "mid"
    assert moved.response_headers["x-vsr-failover"] == "true"
    for endpoint in ("10.0.0.2:8000", "10.0.0.3:8000"):
        health.record_failure(endpoint)
    assert skip_unhealthy(decision, health) is decision  # none healthy: try the first choice anyway


# --- bodies the fuzz run found ------------------------------------------------------------------------------


def test_deep_json_is_refused_before_any_recursive_copy() -> None:
    deep = b'{"model": "MoM", "messages": [], "x": ' + b"[" * 900 + b"]" * 900 + b"}"
    with pytest.raises(ValueError, match="nested deeper"):
        load_body(deep)
    assert load_body(b'{"x": ' + b"[" * 60 + b"]" * 60 + b"}")["x"]


def test_a_model_name_too_long_for_a_header_is_a_400() -> None:
    cfg = RouterConfig.model_validate(
        {
            "vllm_endpoints": [{"name": "e", "address": "127.0.0.1", "port": 1}],
            "model_config": {"m": {"preferred_endpoints": ["e"]}},
            "default_model": "m",
        }
    )
    with pytest.raises(InvalidRequest) as err:
        plan_request(cfg, {"model": "🙂" * 5000, "messages": [{"role": "user", "content": "hi"}]}, {})
    assert err.value.param == "model"


# --- logs ------------------------------------------------------------------------------------------------------


def test_the_router_log_has_no_per_call_library_lines(caplog: pytest.LogCaptureFixture) -> None:
    """httpx logs every request at INFO (the cache-entries poll made one line every 5 s): only WARNING and up."""
    from router_service.__main__ import configure_logging

    caplog.set_level(logging.INFO)  # the root logger at INFO, as the router runs
    configure_logging()
    try:
        logging.getLogger("httpx").info("HTTP Request: GET http://127.0.0.1:8090/v1/cache/stats")
        logging.getLogger("router_service.router").info("decision request_id=-")
        logging.getLogger("httpx").warning("a warning still shows")
    finally:
        for name in ("httpx", "httpcore", "hpack", "grpc"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    assert [r.name for r in caplog.records] == ["router_service.router", "httpx"]
