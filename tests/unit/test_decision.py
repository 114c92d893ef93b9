"""Table tests of the decision core: plan_request() validation and every routing/guard rule of decide()."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import yaml

from router_service.config import RouterConfig, load_config
from router_service.core.decision import (
    Blocked,
    PiiEntity,
    Plan,
    Routed,
    TextSignals,
    decide,
    load_body,
    message_text,
    plan_request,
)
from router_service.core.tools import ToolEntry, ToolIndex
from router_service.errors import InvalidRequest

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "vsr-classic"  # vendored, see its NOTICE.md

BASE_YAML = """
vllm_endpoints:
  - {name: ep-a, address: 10.0.0.1, port: 8000}
  - {name: ep-b, address: 10.0.0.2, port: 8000, weight: 1}
  - {name: ep-b2, address: 10.0.0.3, port: 8000, weight: 5}
model_config:
  qwen:
    reasoning_family: qwen3
    preferred_endpoints: [ep-a]
    pii_policy: {allow_by_default: false, pii_types_allowed: [EMAIL_ADDRESS]}
  gpt:
    reasoning_family: gpt
    preferred_endpoints: [ep-b, ep-b2]
  plain:
    preferred_endpoints: [ep-a]
  strict:
    preferred_endpoints: [ep-a]
    pii_policy: {allow_by_default: false}
default_model: gpt
reasoning_families:
  qwen3: {type: chat_template_kwargs, parameter: enable_thinking}
  deepseek: {type: chat_template_kwargs, parameter: thinking}
  gpt: {type: reasoning_effort, parameter: reasoning_effort}
default_reasoning_effort: medium
classifier:
  category_model: {threshold: 0.6}
  pii_model: {threshold: 0.7}
prompt_guard: {enabled: true, threshold: 0.7}
semantic_cache: {enabled: true, similarity_threshold: 0.85}
tools: {enabled: true, top_k: 2, similarity_threshold: 0.5, fallback_to_empty: true}
categories:
  - name: math
    system_prompt: You are a math expert.
    model_scores:
      - {model: qwen, score: 0.9, use_reasoning: true}
      - {model: gpt, score: 0.8, use_reasoning: true, reasoning_effort: high}
  - name: history
    system_prompt: Historian.
    system_prompt_mode: insert
    jailbreak_threshold: 0.95
    semantic_cache_enabled: false
    model_scores:
      - {model: gpt, score: 0.7, use_reasoning: false}
  - name: law
    jailbreak_enabled: false
    pii_threshold: 0.95
    model_scores:  # listed worst first: ranking is by score, not file order
      - {model: qwen, score: 0.5}
      - {model: strict, score: 0.9}
  - name: health
    system_prompt: Doctor.
    system_prompt_enabled: false
    semantic_cache_similarity_threshold: 0.95
    model_scores:
      - {model: plain, score: 0.8, use_reasoning: true}
  - name: physics
    mmlu_categories: [astronomy]
    model_scores:
      - {model: gpt, score: 0.9, use_reasoning: true}
      - {model: qwen, score: 0.9, use_reasoning: false}
  - name: chemistry
    model_scores:
      - {model: qwen, score: 0.9, use_reasoning: false, lora_name: qwen-chem-lora}
  - name: other
    pii_enabled: false
    jailbreak_enabled: true
    jailbreak_threshold: 0.3
    model_scores:
      - {model: qwen, score: 0.5}
  - name: empty
keyword_rules:
  - {category: law, operator: OR, keywords: [statute, tort law]}
  - {category: history, operator: AND, keywords: [Rome, empire], case_sensitive: true}
"""


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def make_cfg(**overrides: Any) -> RouterConfig:
    return RouterConfig.model_validate(deep_merge(yaml.safe_load(BASE_YAML), overrides))


CFG = make_cfg()
OPEN = {"triton_router": {"failure_policy": {"jailbreak": "open", "pii": "open"}}}


def unit(*xs: float) -> npt.NDArray[np.float32]:
    v = np.zeros(4, dtype=np.float32)
    v[: len(xs)] = xs
    return v


def at_angle(cos: float) -> npt.NDArray[np.float32]:
    return unit(cos, math.sqrt(max(0.0, 1 - cos * cos)))


def sig(
    intent: str = "math",
    conf: float = 0.9,
    jb: float = 0.0,
    pii: tuple[tuple[str, float], ...] = (),
    emb: npt.NDArray[np.float32] | None = None,
) -> TextSignals:
    entities = tuple(PiiEntity(t, 0, 4, "xxxx", c) for t, c in pii)
    return TextSignals(intent, conf, {intent: conf}, jb, entities, unit(1.0) if emb is None else emb)


CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def chat(*messages: dict[str, Any] | str, model: str = "MoM", **extra: Any) -> dict[str, Any]:
    msgs = [user(m) if isinstance(m, str) else m for m in messages]
    return {"model": model, "messages": msgs, **extra}


def run(
    body: dict[str, Any],
    by_text: Mapping[str, TextSignals] | None = None,
    *,
    cfg: RouterConfig = CFG,
    default: TextSignals | None = None,
    unavailable: bool = False,
    tool_index: ToolIndex | None = None,
) -> Routed | Blocked:
    """plan → fake Triton (per-text signals, else `default`) → decide."""
    p = plan_request(cfg, body, {})
    fallback = default or sig()
    signals = None if unavailable else [(by_text or {}).get(t, fallback) for t in p.texts]
    return decide(cfg, p, body, signals, tool_index)


def routed(result: Routed | Blocked) -> Routed:
    assert isinstance(result, Routed), result
    return result


def blocked(result: Routed | Blocked) -> Blocked:
    assert isinstance(result, Blocked), result
    return result


# --- plan -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param([1, 2], None, id="body-not-object"),
        pytest.param({"messages": [user("hi")]}, "model", id="model-missing"),
        pytest.param({"model": 3, "messages": [user("hi")]}, "model", id="model-not-string"),
        pytest.param({"model": " ", "messages": [user("hi")]}, "model", id="model-blank"),
        pytest.param({"model": "MoM"}, "messages", id="messages-missing"),
        pytest.param({"model": "MoM", "messages": []}, "messages", id="messages-empty"),
        pytest.param({"model": "MoM", "messages": "hi"}, "messages", id="messages-not-list"),
        pytest.param({"model": "MoM", "messages": ["hi"]}, "messages[0]", id="message-not-object"),
        pytest.param(
            {"model": "MoM", "messages": [{"role": "boss", "content": "x"}]},
            "messages[0].role",
            id="bad-role",
        ),
        pytest.param({"model": "MoM", "messages": [{"content": "x"}]}, "messages[0].role", id="role-missing"),
        pytest.param(
            {"model": "MoM", "messages": [user("a"), {"role": "user", "content": 5}]},
            "messages[1].content",
            id="content-number",
        ),
        pytest.param(
            {"model": "MoM", "messages": [{"role": "user", "content": ["text"]}]},
            "messages[0].content[0]",
            id="content-part-not-object",
        ),
        pytest.param(
            {"model": "MoM", "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]},
            "messages[0].content[0].text",
            id="text-part-not-string",
        ),
        pytest.param({"model": "MoM", "messages": [user("hi")], "stream": "yes"}, "stream", id="stream-not-bool"),
        pytest.param({"model": "MoM\n", "messages": [user("hi")]}, "model", id="model-control-character"),
        pytest.param(
            {"model": "MoM", "messages": [user("hi")], "stream_options": 5}, "stream_options", id="stream-options-5"
        ),
        pytest.param(
            {"model": "MoM", "messages": [user("hi")], "stream_options": {"include_usage": "x"}},
            "stream_options.include_usage",
            id="include-usage-not-bool",
        ),
        pytest.param({"model": "MoM", "messages": [user("hi")], "tools": {}}, "tools", id="tools-not-list"),
        pytest.param({"model": "MoM", "messages": [user("hi")], "tools": [1]}, "tools[0]", id="tool-not-object"),
        pytest.param(
            {"model": "MoM", "messages": [user("hi")], "tool_choice": "sometimes"},
            "tool_choice",
            id="bad-tool-choice",
        ),
    ],
)
def test_plan_rejects_malformed_bodies(body: Any, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as err:
        plan_request(CFG, body, {})
    assert err.value.param == param
    assert err.value.status == 400


def test_plan_lists_each_text_once_with_its_purposes() -> None:
    body = chat(
        {"role": "system", "content": "sys"},
        "first",
        {"role": "assistant", "content": "answer"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "last"}, {"type": "image_url", "image_url": {"url": "data:,"}}],
        },
        "first",
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
    )
    p = plan_request(CFG, body, {})
    assert p.texts == ("sys", "first", "answer", "last")
    assert p.pii_indices == (0, 1, 2, 3)
    assert p.jailbreak_indices == (1, 3)
    assert (p.embedding_index, p.intent_index) == (1, 1)  # the last user message is "first" again
    assert p.is_auto and not p.stream and p.requested_model == "MoM"


@pytest.mark.parametrize(
    ("model", "is_auto", "intent_index"),
    [
        pytest.param("MoM", True, 0, id="auto-model-name"),
        pytest.param("auto", True, 0, id="auto-alias"),
        pytest.param("qwen", False, None, id="explicit"),
    ],
)
def test_plan_classifies_intent_only_for_auto(model: str, is_auto: bool, intent_index: int | None) -> None:
    p = plan_request(CFG, chat("hello", model=model, stream=True), {})
    assert (p.is_auto, p.intent_index, p.embedding_index, p.stream) == (is_auto, intent_index, 0, True)


def test_message_text_joins_text_parts() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "input_audio"}, {"type": "text", "text": "b"}]
    assert message_text({"role": "user", "content": parts}) == "a\nb"
    assert message_text({"role": "assistant", "content": None}) == ""


def test_decide_rejects_signals_that_do_not_match_plan() -> None:
    body = chat("hello")
    with pytest.raises(ValueError, match="signals"):
        decide(CFG, plan_request(CFG, body, {}), body, [sig(), sig()], None)


# --- auto routing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "signal", "cfg", "model", "endpoint", "category", "reason"),
    [
        pytest.param(chat("q"), sig("math", 0.9), CFG, "qwen", "10.0.0.1:8000", "math", "classifier", id="best-score"),
        pytest.param(
            chat("q"), sig("math", 0.6), CFG, "qwen", "10.0.0.1:8000", "math", "classifier", id="at-threshold"
        ),
        pytest.param(
            chat("q"),
            sig("math", 0.59),
            CFG,
            "gpt",
            "10.0.0.3:8000",
            None,
            "low_confidence",
            id="below-threshold",
        ),
        pytest.param(
            chat("q"),
            sig("biology", 0.99),
            CFG,
            "gpt",
            "10.0.0.3:8000",
            None,
            "unknown_category",
            id="unknown-category",
        ),
        pytest.param(chat("q"), sig("empty", 0.9), CFG, "gpt", "10.0.0.3:8000", "empty", "classifier", id="no-scores"),
        pytest.param(
            chat("q"),
            sig("astronomy", 0.9),
            CFG,
            "gpt",
            "10.0.0.3:8000",
            "physics",
            "classifier",
            id="mmlu-mapping",
        ),
        pytest.param(
            chat("q", model="auto"),
            sig("math"),
            CFG,
            "qwen",
            "10.0.0.1:8000",
            "math",
            "classifier",
            id="auto-alias",
        ),
        pytest.param(
            chat("q", model="router"),
            sig("math"),
            make_cfg(auto_model_name="router"),
            "qwen",
            "10.0.0.1:8000",
            "math",
            "classifier",
            id="custom-auto-name",
        ),
        pytest.param(
            chat({"role": "system", "content": "only system"}),
            sig("math"),
            CFG,
            "gpt",
            "10.0.0.3:8000",
            None,
            "no_user_text",
            id="no-user-text",
        ),
        pytest.param(
            chat("q", model="MoM"),
            sig("math"),
            make_cfg(auto_model_name="router"),
            "MoM",
            "10.0.0.3:8000",
            None,
            "explicit",
            id="old-auto-name-is-explicit",
        ),
    ],
)
def test_auto_routing(
    body: dict[str, Any],
    signal: TextSignals,
    cfg: RouterConfig,
    model: str,
    endpoint: str,
    category: str | None,
    reason: str,
) -> None:
    r = routed(run(body, cfg=cfg, default=signal))
    assert (r.model, r.endpoint, r.category, r.reason) == (model, endpoint, category, reason)
    assert r.body["model"] == model
    assert r.upstream_headers == {"x-vsr-destination-endpoint": endpoint, "x-selected-model": model}
    assert r.response_headers["x-vsr-selected-model"] == model
    assert r.response_headers.get("x-vsr-selected-category") == category


def test_auto_routing_classifies_the_last_user_message() -> None:
    body = chat("integrate x^2", {"role": "assistant", "content": "x^3/3"}, "who was Caesar?")
    r = routed(run(body, {"integrate x^2": sig("math"), "who was Caesar?": sig("history", 0.8)}))
    assert (r.model, r.category, r.confidence) == ("gpt", "history", 0.8)


def test_ties_keep_file_order_and_failover_follows_the_chain() -> None:
    r = routed(run(chat("q"), default=sig("physics")))
    assert r.model == "gpt"  # gpt and qwen both 0.9: the first listed wins
    assert r.endpoint == "10.0.0.3:8000"  # weight 5 beats weight 1
    assert r.candidates == (("gpt", "10.0.0.2:8000"), ("qwen", "10.0.0.1:8000"))


def test_lora_name_is_sent_upstream_while_endpoints_follow_the_base_model() -> None:
    r = routed(run(chat("q"), default=sig("chemistry")))
    assert (r.model, r.endpoint, r.body["model"]) == ("qwen-chem-lora", "10.0.0.1:8000", "qwen-chem-lora")


# --- explicit models --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "endpoint", "candidates"),
    [
        pytest.param("qwen", "10.0.0.1:8000", (), id="known-single-endpoint"),
        pytest.param("gpt", "10.0.0.3:8000", (("gpt", "10.0.0.2:8000"),), id="weighted-endpoints"),
        pytest.param("mystery", "10.0.0.3:8000", (("mystery", "10.0.0.2:8000"),), id="unknown-uses-default-endpoints"),
    ],
)
def test_explicit_model_skips_classification(
    model: str, endpoint: str, candidates: tuple[tuple[str, str], ...]
) -> None:
    body = chat(
        "who was Caesar?",
        model=model,
        reasoning_effort="low",
        chat_template_kwargs={"enable_thinking": True},
    )
    r = routed(run(body, default=sig("history", 0.99)))
    assert (r.model, r.endpoint, r.candidates, r.category, r.confidence) == (
        model,
        endpoint,
        candidates,
        None,
        None,
    )
    assert r.reason == "explicit"
    assert not r.reasoning and not r.injected_system_prompt
    assert r.body == body  # reasoning fields and messages untouched
    assert "x-vsr-selected-category" not in r.response_headers


# --- keyword rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "category", "reason"),
    [
        pytest.param("Which STATUTE applies?", "law", "keyword", id="or-case-insensitive"),
        pytest.param("explain tort law please", "law", "keyword", id="or-phrase"),
        pytest.param("read the statutes", "math", "classifier", id="whole-words-only"),
        pytest.param("Rome was an empire", "history", "keyword", id="and-all-present"),
        pytest.param("Rome was a republic", "math", "classifier", id="and-one-missing"),
        pytest.param("rome was an empire", "math", "classifier", id="and-case-sensitive"),
    ],
)
def test_keyword_rules_win_over_the_classifier(text: str, category: str, reason: str) -> None:
    r = routed(run(chat(text), default=sig("math", 0.99)))
    assert (r.category, r.reason) == (category, reason)
    assert r.confidence == (1.0 if reason == "keyword" else 0.99)


@pytest.mark.parametrize(
    ("text", "category"),
    [
        pytest.param("tell me a joke", "other", id="nor-none-present"),
        pytest.param("review my code", "math", id="nor-hit"),
    ],
)
def test_nor_keyword_rule(text: str, category: str) -> None:
    cfg = make_cfg(keyword_rules=[{"category": "other", "operator": "nor", "keywords": ["code"]}])
    assert routed(run(chat(text), cfg=cfg, default=sig("math"))).category == category


def test_keyword_rules_do_not_apply_to_explicit_models() -> None:
    r = routed(run(chat("which statute?", model="qwen")))
    assert (r.model, r.category) == ("qwen", None)


def test_keyword_rule_routes_without_triton() -> None:
    r = routed(run(chat("which statute?"), cfg=make_cfg(**OPEN), unavailable=True))
    assert (r.model, r.category, r.reason, r.confidence) == ("strict", "law", "keyword", 1.0)


# --- jailbreak --------------------------------------------------------------------------------------


GUARD_OFF = make_cfg(prompt_guard={"enabled": False})


@pytest.mark.parametrize(
    ("messages", "by_text", "cfg", "is_blocked"),
    [
        pytest.param(["q"], {"q": sig("math", jb=0.7)}, CFG, True, id="at-threshold-blocks"),
        pytest.param(["q"], {"q": sig("math", jb=0.69)}, CFG, False, id="below-threshold-passes"),
        pytest.param(["evil", "q"], {"evil": sig(jb=0.9), "q": sig()}, CFG, True, id="earlier-user-message"),
        pytest.param(
            [{"role": "assistant", "content": "evil"}, "q"],
            {"evil": sig(jb=0.99), "q": sig()},
            CFG,
            False,
            id="assistant-not-checked",
        ),
        pytest.param(["q"], {"q": sig("history", jb=0.9)}, CFG, False, id="category-threshold-higher"),
        pytest.param(["q"], {"q": sig("history", jb=0.96)}, CFG, True, id="category-threshold-reached"),
        pytest.param(["q"], {"q": sig("history", 0.5, jb=0.9)}, CFG, True, id="low-confidence-uses-global"),
        pytest.param(["q"], {"q": sig("other", jb=0.4)}, CFG, True, id="category-lower-threshold"),
        pytest.param(["q"], {"q": sig("other", jb=0.4)}, GUARD_OFF, True, id="category-enables"),
        pytest.param(["q"], {"q": sig("math", jb=0.99)}, GUARD_OFF, False, id="guard-off"),
        pytest.param(["which statute?"], {}, CFG, False, id="category-disables"),
    ],
)
def test_jailbreak_guard(
    messages: list[Any], by_text: dict[str, TextSignals], cfg: RouterConfig, is_blocked: bool
) -> None:
    result = run(chat(*messages), by_text, cfg=cfg, default=sig("math", jb=0.99))
    assert isinstance(result, Blocked) is is_blocked
    if is_blocked:
        assert blocked(result).reason == "jailbreak"


def test_jailbreak_block_carries_vsr_headers() -> None:
    b = blocked(run(chat("q"), default=sig("history", jb=0.987654)))
    assert b.reason == "jailbreak" and b.category == "history"
    assert b.headers == {
        "x-vsr-jailbreak-blocked": "true",
        "x-vsr-jailbreak-type": "jailbreak",
        "x-vsr-jailbreak-confidence": "0.988",
    }
    assert b.detail["threshold"] == 0.95


def _model_threshold_cfg(threshold: float | None) -> RouterConfig:
    raw = deep_merge(yaml.safe_load(BASE_YAML), {})
    raw["prompt_guard"] = {"enabled": True} if threshold is None else {"enabled": True, "threshold": threshold}
    return RouterConfig.model_validate(raw)


@pytest.mark.parametrize(
    ("configured", "model_threshold", "score", "is_blocked"),
    [
        pytest.param(None, 0.75, 0.74, False, id="model-threshold-not-reached"),
        pytest.param(None, 0.75, 0.75, True, id="model-threshold-reached"),
        pytest.param(None, 0.3, 0.5, True, id="model-threshold-low"),
        pytest.param(0.9, 0.3, 0.5, False, id="configured-threshold-wins"),
        pytest.param(0.4, 0.95, 0.5, True, id="configured-threshold-wins-lower"),
    ],
)
def test_jailbreak_threshold_defaults_to_the_model_build(
    configured: float | None, model_threshold: float, score: float, is_blocked: bool
) -> None:
    """Without `prompt_guard.threshold`, the operating point the build chose on validation (carried by the
    signals, from the model's manifest) decides; a configured threshold overrides it."""
    cfg = _model_threshold_cfg(configured)
    signal = dataclasses.replace(sig("math", jb=score), jailbreak_threshold=model_threshold)
    result = run(chat("q"), {"q": signal}, cfg=cfg)
    assert isinstance(result, Blocked) is is_blocked
    if is_blocked:
        assert blocked(result).detail["threshold"] == (configured if configured is not None else model_threshold)


def test_explicit_models_are_guarded_too() -> None:
    assert blocked(run(chat("q", model="gpt"), default=sig(jb=0.8))).reason == "jailbreak"


# --- PII --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "signal", "model", "reason"),
    [
        pytest.param("q", sig("math", pii=(("EMAIL_ADDRESS", 0.9),)), "qwen", "classifier", id="allowed-type"),
        pytest.param("q", sig("math", pii=(("US_SSN", 0.9),)), "gpt", "classifier+pii_fallback", id="next-in-category"),
        pytest.param("q", sig("math", pii=(("US_SSN", 0.69),)), "qwen", "classifier", id="below-threshold"),
        pytest.param("q", sig("math", pii=(("NO_PII", 0.99),)), "qwen", "classifier", id="no-pii-label"),
        pytest.param(
            "statute?",
            sig("math", pii=(("EMAIL_ADDRESS", 0.99),)),
            "qwen",
            "keyword+pii_fallback",
            id="law-next",
        ),
        pytest.param("statute?", sig("math", pii=(("PERSON", 0.99),)), "gpt", "keyword+pii_fallback", id="law-default"),
        pytest.param("statute?", sig("math", pii=(("PERSON", 0.9),)), "strict", "keyword", id="category-threshold"),
        pytest.param("q", sig("other", pii=(("US_SSN", 0.99),)), "qwen", "classifier", id="category-disabled"),
    ],
)
def test_pii_fallback_chain(text: str, signal: TextSignals, model: str, reason: str) -> None:
    r = routed(run(chat(text), default=signal))
    assert (r.model, r.reason) == (model, reason)


def test_pii_fallback_reports_types_and_trims_candidates() -> None:
    r = routed(run(chat("q"), default=sig("math", pii=(("US_SSN", 0.9), ("PERSON", 0.8)))))
    assert r.pii_types == ("PERSON", "US_SSN")
    assert ("qwen", "10.0.0.1:8000") not in r.candidates
    assert r.pii_denied == {"qwen": ("PERSON", "US_SSN")}  # what llm_pii_violations_total counts


def test_pii_denied_names_every_model_passed_over_and_only_those() -> None:
    r = routed(run(chat("statute?"), default=sig("math", pii=(("PERSON", 0.99),))))
    assert (r.model, r.pii_denied) == ("gpt", {"strict": ("PERSON",), "qwen": ("PERSON",)})
    assert routed(run(chat("q"), default=sig("math", pii=(("EMAIL_ADDRESS", 0.9),)))).pii_denied == {}


def test_pii_in_any_message_counts() -> None:
    body = chat({"role": "system", "content": "ssn 123-45-6789"}, "q")
    r = routed(run(body, {"ssn 123-45-6789": sig(pii=(("US_SSN", 0.9),)), "q": sig("math")}))
    assert r.model == "gpt"


def test_pii_blocks_when_no_candidate_may_receive_it() -> None:
    cfg = make_cfg(default_model="strict")
    b = blocked(run(chat("statute?"), cfg=cfg, default=sig(pii=(("PERSON", 0.99),))))
    assert (b.reason, b.category, b.headers) == ("pii", "law", {"x-vsr-pii-violation": "true"})
    assert b.detail == {"pii_types": ["PERSON"], "denied": {"strict": ["PERSON"], "qwen": ["PERSON"]}}


@pytest.mark.parametrize(
    ("model", "pii_type", "is_blocked"),
    [
        pytest.param("qwen", "US_SSN", True, id="denied"),
        pytest.param("qwen", "EMAIL_ADDRESS", False, id="allowed-list"),
        pytest.param("gpt", "US_SSN", False, id="no-policy-allows-all"),
        pytest.param("mystery", "US_SSN", False, id="unknown-model-allows-all"),
    ],
)
def test_pii_explicit_model(model: str, pii_type: str, is_blocked: bool) -> None:
    result = run(chat("q", model=model), default=sig(pii=((pii_type, 0.9),)))
    assert isinstance(result, Blocked) is is_blocked


def test_pii_check_off_without_pii_model() -> None:
    raw = yaml.safe_load(BASE_YAML)
    del raw["classifier"]["pii_model"]
    cfg = RouterConfig.model_validate(raw)
    assert routed(run(chat("q"), cfg=cfg, default=sig("math", pii=(("US_SSN", 0.99),)))).model == "qwen"


def _with_category_pii_on() -> RouterConfig:
    raw = yaml.safe_load(BASE_YAML)
    del raw["classifier"]["pii_model"]
    raw["categories"][0]["pii_enabled"] = True
    return RouterConfig.model_validate(raw)


def _without_pii_model() -> RouterConfig:
    raw = yaml.safe_load(BASE_YAML)
    del raw["classifier"]["pii_model"]
    return RouterConfig.model_validate(raw)


ALL_ALLOW = {"model_config": {m: {"pii_policy": {"allow_by_default": True}} for m in ("qwen", "strict")}}


@pytest.mark.parametrize(
    ("cfg", "model", "needs_pii"),
    [
        pytest.param(CFG, "MoM", True, id="auto-a-reachable-model-restricts"),
        pytest.param(CFG, "qwen", True, id="explicit-restricted-model"),
        pytest.param(CFG, "gpt", False, id="explicit-model-allows-all"),
        pytest.param(CFG, "mystery", False, id="explicit-unknown-model-allows-all"),
        pytest.param(make_cfg(**ALL_ALLOW), "MoM", False, id="auto-every-model-allows-all"),
        pytest.param(make_cfg(**ALL_ALLOW), "qwen", False, id="explicit-now-permissive"),
        pytest.param(_without_pii_model(), "MoM", False, id="pii-detection-off"),
        pytest.param(_without_pii_model(), "qwen", False, id="pii-detection-off-explicit"),
        pytest.param(_with_category_pii_on(), "MoM", True, id="one-category-turns-it-on"),
        pytest.param(load_config(REFERENCE / "config.yaml"), "MoM", False, id="vsr-config-yaml"),
        pytest.param(load_config(REFERENCE / "config.e2e.yaml"), "MoM", True, id="vsr-config-e2e"),
    ],
)
def test_plan_asks_for_pii_only_where_it_can_change_the_outcome(cfg: RouterConfig, model: str, needs_pii: bool) -> None:
    body = chat({"role": "system", "content": "be brief"}, "my ssn is 123-45-6789", model=model)
    p = plan_request(cfg, body, {})
    assert cfg.pii_can_matter(model, cfg.is_auto_model(model)) is needs_pii
    assert p.pii_indices == ((0, 1) if needs_pii else ())
    # Without PII the system prompt is not sent to Triton at all: only the user text is classified.
    assert p.texts == (("be brief", "my ssn is 123-45-6789") if needs_pii else ("my ssn is 123-45-6789",))


def test_pii_not_computed_where_it_is_needed_counts_as_unknown() -> None:
    # A fail-safe: signals without PII (never sent for a plan that needs it) are treated like a missing Triton
    # answer for PII, so only a model that allows every type may receive the request.
    no_pii = TextSignals("math", 0.9, {"math": 0.9}, 0.0, None, unit(1.0))
    r = routed(run(chat("q"), default=no_pii))
    assert r.model == "gpt"
    b = blocked(run(chat("q", model="qwen"), default=no_pii))
    assert b.reason == "classifier_unavailable"


# --- reasoning --------------------------------------------------------------------------------------

CLIENT_REASONING: dict[str, Any] = {
    "reasoning_effort": "low",
    "chat_template_kwargs": {"thinking": False, "keep": 1},
}


@pytest.mark.parametrize(
    ("signal", "expect_fields", "absent", "on"),
    [
        pytest.param(
            sig("math"),
            {"chat_template_kwargs": {"keep": 1, "enable_thinking": True}},
            ["reasoning_effort"],
            True,
            id="template-kwargs-on",
        ),
        pytest.param(
            sig("physics"),
            {"reasoning_effort": "medium", "chat_template_kwargs": {"keep": 1}},
            [],
            True,
            id="effort-default",
        ),
        pytest.param(
            sig("math", pii=(("US_SSN", 0.9),)),
            {"reasoning_effort": "high", "chat_template_kwargs": {"keep": 1}},
            [],
            True,
            id="effort-from-entry",
        ),
        pytest.param(
            sig("history"),
            {"chat_template_kwargs": {"keep": 1}},
            ["reasoning_effort"],
            False,
            id="effort-off-removed",
        ),
        pytest.param(
            sig("chemistry"),
            {"chat_template_kwargs": {"keep": 1, "enable_thinking": False}},
            ["reasoning_effort"],
            False,
            id="template-kwargs-off",
        ),
        pytest.param(sig("health"), CLIENT_REASONING, [], False, id="no-family-untouched"),
        pytest.param(
            sig("math", 0.1),
            {"chat_template_kwargs": {"keep": 1}},
            ["reasoning_effort"],
            False,
            id="default-model-off",
        ),
    ],
)
def test_reasoning(signal: TextSignals, expect_fields: dict[str, Any], absent: list[str], on: bool) -> None:
    r = routed(run(chat("q", **copy.deepcopy(CLIENT_REASONING)), default=signal))
    for key, value in expect_fields.items():
        assert r.body[key] == value
    for key in absent:
        assert key not in r.body
    assert r.reasoning is on
    assert r.response_headers["x-vsr-selected-reasoning"] == ("on" if on else "off")


def test_reasoning_removes_client_effort_even_without_an_effort_family() -> None:
    raw = yaml.safe_load(BASE_YAML)
    del raw["reasoning_families"]["gpt"]
    del raw["model_config"]["gpt"]["reasoning_family"]
    cfg = RouterConfig.model_validate(raw)
    r = routed(run(chat("q", reasoning_effort="high"), cfg=cfg, default=sig("math")))
    assert "reasoning_effort" not in r.body and r.body["chat_template_kwargs"] == {"enable_thinking": True}


def test_reasoning_drops_emptied_template_kwargs() -> None:
    r = routed(run(chat("q", chat_template_kwargs={"thinking": True}), default=sig("history")))
    assert "chat_template_kwargs" not in r.body


# --- system prompt ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "signal", "expected", "injected"),
    [
        pytest.param(
            ["q"],
            sig("math"),
            [{"role": "system", "content": "You are a math expert."}, user("q")],
            True,
            id="replace-adds",
        ),
        pytest.param(
            [user("a"), {"role": "system", "content": "old", "name": "s"}, "q"],
            sig("math"),
            [user("a"), {"role": "system", "content": "You are a math expert.", "name": "s"}, user("q")],
            True,
            id="replace-in-place",
        ),
        pytest.param(
            [{"role": "system", "content": "Be brief."}, "q"],
            sig("history"),
            [{"role": "system", "content": "Historian.\n\nBe brief."}, user("q")],
            True,
            id="insert-prepends",
        ),
        pytest.param(
            [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, "q"],
            sig("history"),
            [
                {
                    "role": "system",
                    "content": [
                        {"type": "text", "text": "Historian."},
                        {"type": "text", "text": "Be brief."},
                    ],
                },
                user("q"),
            ],
            True,
            id="insert-parts",
        ),
        pytest.param(
            ["q"],
            sig("history"),
            [{"role": "system", "content": "Historian."}, user("q")],
            True,
            id="insert-adds",
        ),
        pytest.param(["q"], sig("health"), [user("q")], False, id="disabled"),
        pytest.param(["q"], sig("law"), [user("q")], False, id="no-prompt"),
        pytest.param(["q"], sig("math", 0.2), [user("q")], False, id="low-confidence"),
    ],
)
def test_system_prompt(messages: list[Any], signal: TextSignals, expected: list[Any], injected: bool) -> None:
    body = chat(*messages)
    r = routed(run(body, default=signal))
    assert r.body["messages"] == expected
    assert r.injected_system_prompt is injected
    assert r.response_headers["x-vsr-injected-system-prompt"] == ("true" if injected else "false")


def test_decide_never_mutates_the_client_body() -> None:
    body = chat({"role": "system", "content": "old"}, "q", tools=[{"type": "function", "function": {"name": "f"}}])
    snapshot = copy.deepcopy(body)
    routed(run(body, default=sig("math")))
    assert body == snapshot


# --- tools ------------------------------------------------------------------------------------------


def tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": f"does {name}"}}


def tool_signals(scores: Mapping[str, float]) -> dict[str, TextSignals]:
    out = {"q": sig("math", emb=unit(1.0))}
    out.update({f"{n}: does {n}": sig("math", emb=at_angle(s)) for n, s in scores.items()})
    return out


@pytest.mark.parametrize(
    ("scores", "extra", "cfg", "kept", "tool_choice"),
    [
        pytest.param({"a": 0.9, "b": 0.1, "c": 0.7}, {}, CFG, ["a", "c"], None, id="threshold-keeps-order"),
        pytest.param({"a": 0.9, "b": 0.8, "c": 0.95}, {"tool_choice": "auto"}, CFG, ["a", "c"], "auto", id="top-k"),
        pytest.param({"a": 0.1, "b": 0.2}, {"tool_choice": "auto"}, CFG, None, None, id="none-similar-empties"),
        pytest.param(
            {"a": 0.1, "b": 0.2},
            {"tool_choice": "auto"},
            make_cfg(tools={"fallback_to_empty": False}),
            ["a", "b"],
            "auto",
            id="none-similar-keeps",
        ),
        pytest.param(
            {"a": 0.1, "b": 0.9, "c": 0.1},
            {"tool_choice": "none"},
            CFG,
            ["a", "b", "c"],
            "none",
            id="choice-none",
        ),
        pytest.param(
            {"a": 0.1, "b": 0.1},
            {"tool_choice": "required"},
            CFG,
            ["a", "b"],
            "required",
            id="choice-required",
        ),
        pytest.param(
            {"a": 0.1, "b": 0.9},
            {"tool_choice": {"type": "function", "function": {"name": "a"}}},
            CFG,
            ["a", "b"],
            {"type": "function", "function": {"name": "a"}},
            id="choice-specific",
        ),
        pytest.param({"a": 0.1, "b": 0.9}, {}, make_cfg(tools={"enabled": False}), ["a", "b"], None, id="disabled"),
    ],
)
def test_tool_filtering(
    scores: dict[str, float],
    extra: dict[str, Any],
    cfg: RouterConfig,
    kept: list[str] | None,
    tool_choice: Any,
) -> None:
    body = chat("q", tools=[tool(n) for n in scores], parallel_tool_calls=True, **extra)
    r = routed(run(body, tool_signals(scores), cfg=cfg))
    names = [t["function"]["name"] for t in r.body["tools"]] if "tools" in r.body else None
    assert names == kept
    assert r.body.get("tool_choice") == tool_choice
    assert ("parallel_tool_calls" in r.body) is (kept is not None)


def catalogue() -> ToolIndex:
    entries = [ToolEntry(tool(n), n, f"does {n}") for n in ("weather", "search", "calc")]
    return ToolIndex(entries, np.stack([at_angle(0.9), at_angle(0.3), at_angle(0.95)]))


@pytest.mark.parametrize(
    ("extra", "index", "added", "tool_choice"),
    [
        pytest.param({"tool_choice": "auto"}, catalogue(), ["calc", "weather"], "auto", id="adds-top-k"),
        pytest.param({}, catalogue(), None, None, id="no-tool-choice-no-add"),
        pytest.param({"tool_choice": "auto"}, None, None, "auto", id="no-catalogue"),
        pytest.param(
            {"tool_choice": "auto"},
            ToolIndex([ToolEntry(tool("x"), "x", "x")], np.stack([at_angle(0.1)])),
            None,
            None,
            id="none-similar-drops-choice",
        ),
    ],
)
def test_tools_added_from_catalogue(
    extra: dict[str, Any], index: ToolIndex | None, added: list[str] | None, tool_choice: Any
) -> None:
    r = routed(run(chat("q", **extra), tool_index=index))
    names = [t["function"]["name"] for t in r.body["tools"]] if "tools" in r.body else None
    assert names == added
    assert r.body.get("tool_choice") == tool_choice
    if added:
        assert r.selected_tools == tuple(added)


def test_tools_untouched_without_signals() -> None:
    body = chat("q", model="gpt", tools=[tool("a"), tool("b"), tool("c")])
    r = routed(run(body, cfg=make_cfg(**OPEN), unavailable=True))
    assert r.body["tools"] == body["tools"] and r.selected_tools is None


# --- failure policy (Triton unavailable) ------------------------------------------------------------


def policy(**values: str) -> RouterConfig:
    return make_cfg(triton_router={"failure_policy": values})


@pytest.mark.parametrize(
    ("body", "cfg", "outcome"),
    [
        pytest.param(chat("q"), CFG, "blocked:jailbreak", id="default-jailbreak-closed"),
        pytest.param(chat("q"), make_cfg(prompt_guard={"enabled": False}), "routed:gpt", id="closed-guard-off-passes"),
        pytest.param(chat("q"), policy(jailbreak="open"), "routed:gpt", id="classification-open-default-model"),
        pytest.param(
            chat("q"),
            policy(jailbreak="open", classification="closed"),
            "blocked:classification",
            id="class-closed",
        ),
        pytest.param(chat("q", model="qwen"), policy(jailbreak="open"), "blocked:pii", id="pii-closed-restrictive"),
        pytest.param(chat("q", model="gpt"), policy(jailbreak="open"), "routed:gpt", id="pii-closed-permissive"),
        pytest.param(chat("q", model="qwen"), policy(jailbreak="open", pii="open"), "routed:qwen", id="pii-open"),
        pytest.param(chat("statute?"), policy(jailbreak="open"), "routed:gpt", id="closed-pii-skips-restrictive"),
        pytest.param(
            chat("statute?", model="strict"),
            make_cfg(prompt_guard={"enabled": False}, triton_router={"failure_policy": {"pii": "closed"}}),
            "blocked:pii",
            id="explicit-strict",
        ),
    ],
)
def test_failure_policy(body: dict[str, Any], cfg: RouterConfig, outcome: str) -> None:
    result = run(body, cfg=cfg, unavailable=True)
    kind, _, what = outcome.partition(":")
    if kind == "blocked":
        b = blocked(result)
        assert (b.reason, b.detail["check"]) == ("classifier_unavailable", what)
    else:
        r = routed(result)
        assert r.model == what


def test_unavailable_auto_routes_to_default_with_reason() -> None:
    r = routed(run(chat("q"), cfg=policy(jailbreak="open"), unavailable=True))
    assert (r.category, r.confidence, r.reason) == (None, None, "classifier_unavailable")


def test_no_texts_means_no_checks() -> None:
    body = chat({"role": "assistant", "content": None, "tool_calls": [CALL]})
    assert routed(run(body, unavailable=True)).model == "gpt"


# --- cache policy -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signal", "cfg", "enabled", "threshold"),
    [
        pytest.param(sig("math"), CFG, True, 0.85, id="global"),
        pytest.param(sig("history"), CFG, False, 0.85, id="category-disabled"),
        pytest.param(sig("health"), CFG, True, 0.95, id="category-threshold"),
        pytest.param(sig("health", 0.1), CFG, True, 0.85, id="low-confidence-global"),
        pytest.param(
            sig("math"),
            make_cfg(semantic_cache={"similarity_threshold": None}, bert_model={"threshold": 0.7}),
            True,
            0.7,
            id="bert-fallback",
        ),
        pytest.param(sig("math"), make_cfg(semantic_cache={"enabled": False}), False, 0.85, id="global-off"),
    ],
)
def test_cache_policy(signal: TextSignals, cfg: RouterConfig, enabled: bool, threshold: float) -> None:
    r = routed(run(chat("q"), cfg=cfg, default=signal))
    assert (r.cache.enabled, r.cache.threshold) == (enabled, threshold)


# --- the reference configs route -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "intent", "model", "endpoint", "reasoning_fields", "system_prompt"),
    [
        pytest.param("config.e2e.yaml", "math", "Model-B", "127.0.0.1:8001", {}, False, id="e2e-math"),
        pytest.param(
            "config.e2e.yaml",
            "chemistry",
            "Model-A",
            "127.0.0.1:8000",
            {"chat_template_kwargs": {"enable_thinking": True}},
            False,
            id="e2e-chemistry-reasoning",
        ),
        pytest.param(
            "config.e2e.yaml",
            "business",
            "Model-A",
            "127.0.0.1:8000",
            {"chat_template_kwargs": {"enable_thinking": False}},
            False,
            id="e2e-business",
        ),
        pytest.param(
            "config.yaml",
            "math",
            "qwen3",
            "172.28.0.20:8002",
            {"chat_template_kwargs": {"enable_thinking": True}},
            True,
            id="main-math",
        ),
    ],
)
def test_reference_configs_route(
    file: str, intent: str, model: str, endpoint: str, reasoning_fields: dict[str, Any], system_prompt: bool
) -> None:
    cfg = load_config(REFERENCE / file)
    r = routed(run(chat("q"), cfg=cfg, default=sig(intent, 0.95)))
    assert (r.model, r.endpoint, r.category) == (model, endpoint, intent)
    for key, value in reasoning_fields.items():
        assert r.body[key] == value
    assert r.injected_system_prompt is system_prompt


def test_reference_e2e_pii_moves_to_permissive_model() -> None:
    cfg = load_config(REFERENCE / "config.e2e.yaml")
    r = routed(run(chat("q"), cfg=cfg, default=sig("business", 0.95, pii=(("US_SSN", 0.9),))))
    assert (r.model, r.reason) == ("Model-B", "classifier+pii_fallback")


def test_plan_is_a_value() -> None:
    p = plan_request(CFG, chat("q"), {})
    assert isinstance(p, Plan) and p == plan_request(CFG, chat("q"), {})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a": "plain"}', {"a": "plain"}),
        (
            rb'{"a": "x\ud800y", "b": ["\ud83d\ude00", "\uDFFF"], "\udc00": 1}',
            {"a": "x\ufffdy", "b": ["😀", "\ufffd"], "\ufffd": 1},
        ),
        (rb'{"a": "\\ud800 is text, not an escape"}', {"a": "\\ud800 is text, not an escape"}),
    ],
)
def test_load_body_replaces_lone_surrogates_only(raw: bytes, expected: object) -> None:
    assert load_body(raw) == expected


@pytest.mark.parametrize(("raw", "error"), [(b"", ValueError), (b"{nope", ValueError), (b"[" * 5000, RecursionError)])
def test_load_body_errors(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        load_body(raw)
