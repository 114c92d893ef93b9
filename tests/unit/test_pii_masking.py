"""PII masking: the masking/unmasking core (placeholders, SSE restore across chunk boundaries) and the decision
rules of `pii_policy.action: mask` (eligibility, fail closed, failover, cache, headers)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from router_service.config import RouterConfig, load_config
from router_service.core.decision import PiiEntity, Routed, TextSignals, decide, plan_request
from router_service.core.pii_masking import (
    Masking,
    ResponseRestorer,
    StreamRestorer,
    mask_any_body,
    mask_body,
    plan_masking,
    restore_completion,
)
from router_service.errors import InvalidRequest
from tests.unit.test_decision import REFERENCE, blocked, chat, make_cfg, routed, sig, unit

EMAIL = "jane.doe@example.com"
PHONE = "+1 415 555 0134"


def entity(kind: str, value: str, confidence: float = 0.95) -> PiiEntity:
    return PiiEntity(kind, 0, len(value), value, confidence)


def masking(*entities: PiiEntity, restore: bool = True) -> Masking:
    m = plan_masking(entities, lambda _: True, restore=restore)
    assert m is not None
    return m


# --- the core ------------------------------------------------------------------------------------------


def test_placeholders_are_typed_numbered_per_type_and_stable_per_value() -> None:
    m = masking(entity("EMAIL_ADDRESS", EMAIL), entity("PERSON", "Jane"), entity("EMAIL_ADDRESS", "x@y.org"))
    text = f"Jane wrote from {EMAIL}; reply to x@y.org and {EMAIL}."
    assert m.mask(text) == "<PERSON_1> wrote from <EMAIL_ADDRESS_1>; reply to <EMAIL_ADDRESS_2> and <EMAIL_ADDRESS_1>."
    assert m.counts == {"EMAIL_ADDRESS": 2, "PERSON": 1}
    assert m.unmask(m.mask(text)) == text


def test_only_whole_words_are_masked() -> None:
    m = masking(entity("PERSON", "Al"))
    assert m.mask("Al likes Algebra and AI; ask Al.") == "<PERSON_1> likes Algebra and AI; ask <PERSON_1>."


def test_a_value_containing_another_is_masked_whole() -> None:
    m = masking(entity("PERSON", "Jane"), entity("PERSON", "Jane Doe"))
    assert m.mask("Jane Doe and Jane") == "<PERSON_2> and <PERSON_1>"


def test_a_shorter_value_inside_a_longer_one_that_is_not_a_word_here_is_still_masked() -> None:
    m = masking(entity("PERSON", "Jane Doe"), entity("PERSON", "Doe"))
    assert m.mask("XJane Doe, Jane Doe") == "XJane <PERSON_2>, <PERSON_1>"


def test_types_the_policy_allows_are_left_alone() -> None:
    entities = [entity("EMAIL_ADDRESS", EMAIL), entity("PHONE_NUMBER", PHONE)]
    m = plan_masking(entities, lambda t: t != "EMAIL_ADDRESS", restore=True)
    assert m is not None
    assert m.mask(f"{EMAIL} / {PHONE}") == f"{EMAIL} / <PHONE_NUMBER_1>"
    assert plan_masking(entities, lambda _: False, restore=True) is None


def test_mask_body_covers_every_message_part_and_tool_arguments() -> None:
    m = masking(entity("EMAIL_ADDRESS", EMAIL))
    call = {"id": "c1", "type": "function", "function": {"name": "send", "arguments": json.dumps({"to": EMAIL})}}
    body: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": f"Owner: {EMAIL}"},
            {"role": "user", "content": [{"type": "text", "text": f"mail {EMAIL}"}, {"type": "image_url"}]},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": f"sent to {EMAIL}"},
        ]
    }
    mask_body(body, m)
    assert EMAIL not in json.dumps(body)
    assert json.dumps(body).count("<EMAIL_ADDRESS_1>") == 4


def test_the_repr_and_logs_never_show_values(caplog: pytest.LogCaptureFixture) -> None:
    m = masking(entity("EMAIL_ADDRESS", EMAIL))
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("masking %r %s", m, m)
    assert EMAIL not in repr(m) and EMAIL not in caplog.text
    assert "EMAIL_ADDRESS" in repr(m)


def _completion(content: str) -> bytes:
    return json.dumps(
        {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
    ).encode()


def test_a_json_completion_is_restored_and_unknown_placeholders_stay() -> None:
    m = masking(entity("EMAIL_ADDRESS", EMAIL))
    restorer = ResponseRestorer(m, sse=False)
    body = _completion("Sent to <EMAIL_ADDRESS_1>, not <EMAIL_ADDRESS_9>.")
    out = restorer.feed(body[:10]) + restorer.feed(body[10:]) + restorer.finish()
    assert json.loads(out)["choices"][0]["message"]["content"] == f"Sent to {EMAIL}, not <EMAIL_ADDRESS_9>."
    assert ResponseRestorer(m, sse=False).feed(b"not json") == b""


def _sse(*deltas: dict[str, Any], finish: bool = True) -> bytes:
    events = [{"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": d}]} for d in deltas]
    if finish:
        events.append(
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
        )
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def _text_of(stream: bytes) -> str:
    out = []
    for line in stream.decode().splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                out.append(choice["delta"].get("content") or "")
    return "".join(out)


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 64, 10_000])
def test_a_stream_is_restored_whatever_the_network_chunking(piece: int) -> None:
    m = masking(entity("EMAIL_ADDRESS", EMAIL), entity("PERSON", "Jane"))
    # The model's own chunks split placeholders too: "<EMAIL_AD" + "DRESS_1>".
    stream = _sse(
        {"role": "assistant", "content": ""},
        {"content": "Dear <PER"},
        {"content": "SON_1>, mail <EMAIL_AD"},
        {"content": "DRESS_1> now. 3 < 4 and <b>"},
    )
    restorer = StreamRestorer(m)
    out = b"".join(restorer.feed(stream[i : i + piece]) for i in range(0, len(stream), piece)) + restorer.flush()
    assert _text_of(out) == f"Dear Jane, mail {EMAIL} now. 3 < 4 and <b>"
    assert out.endswith(b"data: [DONE]\n\n")
    assert b"<EMAIL_AD" not in out


def test_a_tail_held_at_the_end_of_a_stream_without_finish_is_released() -> None:
    m = masking(entity("EMAIL_ADDRESS", EMAIL))
    restorer = StreamRestorer(m)
    out = restorer.feed(_sse({"content": "to <EMAIL_ADDRESS_"}, {"content": "1>"}, finish=False)) + restorer.flush()
    assert _text_of(out) == f"to {EMAIL}"


def test_streamed_tool_call_arguments_are_restored() -> None:
    m = masking(entity("EMAIL_ADDRESS", EMAIL))
    parts = ['{"to": "<EMAIL', '_ADDRESS_1>"}']
    deltas = [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in parts]
    restorer = StreamRestorer(m)
    out = restorer.feed(_sse(*deltas)) + restorer.flush()
    args = ""
    for line in out.decode().splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                for call in choice["delta"].get("tool_calls") or ():
                    args += call["function"]["arguments"]
    assert json.loads(args) == {"to": EMAIL}


# --- the decision --------------------------------------------------------------------------------------

MASKING = {
    "model_config": {
        "qwen": {
            "reasoning_family": "qwen3",
            "preferred_endpoints": ["ep-a"],
            "pii_policy": {"allow_by_default": False, "pii_types_allowed": ["EMAIL_ADDRESS"], "action": "mask"},
        }
    }
}
CFG_MASK = make_cfg(**MASKING)
SSN = "123-45-6789"


def run_with(cfg: RouterConfig, body: dict[str, Any], entities: tuple[PiiEntity, ...], **kw: Any) -> Any:
    p = plan_request(cfg, body, {})
    signals: list[TextSignals] | None = [
        TextSignals("math", 0.9, {"math": 0.9}, 0.0, entities, unit(1.0), **kw) for _ in p.texts
    ]
    return decide(cfg, p, body, signals, None)


def test_a_masking_model_keeps_the_request_and_gets_placeholders() -> None:
    body = chat(f"My SSN is {SSN} and my mail {EMAIL}; is 7 prime?")
    r = routed(run_with(CFG_MASK, body, (entity("US_SSN", SSN), entity("EMAIL_ADDRESS", EMAIL))))
    assert r.model == "qwen" and r.reason == "classifier"  # no PII fallback: masking kept the best model
    sent = r.body["messages"][-1]["content"]
    assert SSN not in sent and "<US_SSN_1>" in sent and EMAIL in sent  # e-mail is allowed: left in clear
    assert r.response_headers["x-vsr-pii-masked"] == "US_SSN"
    assert r.masking is not None and r.masking.restore
    assert not r.cache.enabled  # a masked request is never cached
    assert body["messages"][-1]["content"].count(SSN) == 1  # the client's body is untouched


def test_without_masking_the_same_request_falls_back() -> None:
    body = chat(f"My SSN is {SSN}; is 7 prime?")
    p = plan_request(make_cfg(), body, {})
    signals = [sig(pii=(("US_SSN", 0.95),)) for _ in p.texts]
    r = routed(decide(make_cfg(), p, body, signals, None))
    assert r.model != "qwen" and r.reason.endswith("+pii_fallback") and r.masking is None


@pytest.mark.parametrize("policy", ["closed", "open"])
def test_masking_fails_closed_when_detection_is_unavailable(policy: str) -> None:
    cfg = make_cfg(**MASKING, triton_router={"failure_policy": {"pii": policy}})
    body = chat(f"My SSN is {SSN}; is 7 prime?")
    p = plan_request(cfg, body, {})
    result = decide(cfg, p, body, None, None)
    if isinstance(result, Routed):
        assert result.model != "qwen"  # never the masking model with unchecked text
    else:
        assert blocked(result).reason == "classifier_unavailable"


def test_a_truncated_text_is_not_vouched_for() -> None:
    r = routed(run_with(CFG_MASK, chat("is 7 prime?"), (), truncated=True))
    assert r.model != "qwen"


def test_an_explicit_masking_model_always_gets_pii_detection() -> None:
    cfg = make_cfg(**MASKING)
    assert cfg.pii_can_matter("qwen", is_auto=False)
    p = plan_request(cfg, chat(f"SSN {SSN}", model="qwen"), {})
    assert p.pii_indices


def test_an_explicit_masking_model_is_masked() -> None:
    r = routed(run_with(CFG_MASK, chat(f"SSN {SSN}", model="qwen"), (entity("US_SSN", SSN),)))
    assert r.model == "qwen" and SSN not in json.dumps(r.body)


def test_a_masking_failover_candidate_only_gets_what_it_may_see() -> None:
    # physics: gpt (allows all) first, then qwen (masks). gpt gets clear text, so qwen must not be its failover.
    body = chat(f"SSN {SSN}: why is the sky blue?")
    p = plan_request(CFG_MASK, body, {})
    signals = [TextSignals("physics", 0.9, {}, 0.0, (entity("US_SSN", SSN),), unit(1.0)) for _ in p.texts]
    r = routed(decide(CFG_MASK, p, body, signals, None))
    assert r.model == "gpt" and r.masking is None
    assert all(model != "qwen" for model, _ in r.candidates)
    signals = [TextSignals("physics", 0.9, {}, 0.0, (), unit(1.0)) for _ in p.texts]
    r = routed(decide(CFG_MASK, p, body, signals, None))
    assert any(model == "qwen" for model, _ in r.candidates)  # nothing to hide: qwen may take over


def test_action_mask_alone_masks_every_type() -> None:
    cfg = make_cfg(model_config={"plain": {"preferred_endpoints": ["ep-a"], "pii_policy": {"action": "mask"}}})
    policy = cfg.pii_policy_for("plain")
    assert policy.masks and not policy.allows_all and not policy.allows("EMAIL_ADDRESS")


def test_long_messages_are_checked_in_windows() -> None:
    long_text = "word " * 600 + f"SSN {SSN}"
    p = plan_request(CFG_MASK, chat(long_text), {})
    windows = [p.texts[i] for i in p.pii_indices]
    assert len(windows) > 1 and all(len(w) <= 1000 for w in windows)
    assert any(SSN in w for w in windows)


def test_restore_off_is_honoured() -> None:
    cfg = make_cfg(
        model_config={
            "qwen": {
                "preferred_endpoints": ["ep-a"],
                "pii_policy": {"allow_by_default": False, "action": "mask", "restore": False},
            }
        }
    )
    r = routed(run_with(cfg, chat(f"SSN {SSN}", model="qwen"), (entity("US_SSN", SSN),)))
    assert r.masking is not None and not r.masking.restore


@pytest.mark.parametrize("name", ["config.yaml", "config.e2e.yaml"])
def test_vsr_configs_load_unchanged_and_mask_nothing(name: str) -> None:
    cfg = load_config(REFERENCE / name)
    assert not any(cfg.pii_policy_for(m).masks for m in cfg.all_models())
    assert not cfg.triton_router.conversation.enabled


def test_completions_and_responses_bodies_are_masked_everywhere_but_model() -> None:
    m = masking(entity("EMAIL_ADDRESS", EMAIL))
    body = {"model": EMAIL, "prompt": [f"to {EMAIL}"], "input": [{"role": "user", "content": [{"text": EMAIL}]}]}
    masked = mask_any_body(body, m)
    assert masked["model"] == EMAIL  # not content
    assert EMAIL not in json.dumps({k: v for k, v in masked.items() if k != "model"})


def test_a_text_completion_stream_and_responses_events_are_restored() -> None:
    m = masking(entity("EMAIL_ADDRESS", EMAIL))
    events = [
        {"object": "text_completion", "choices": [{"index": 0, "text": "to <EMAIL_"}]},
        {"object": "text_completion", "choices": [{"index": 0, "text": "ADDRESS_1>.", "finish_reason": "stop"}]},
        {"type": "response.output_text.done", "text": "to <EMAIL_ADDRESS_1>."},
    ]
    stream = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    restorer = StreamRestorer(m)
    out = restorer.feed(stream) + restorer.flush()
    lines = [json.loads(line[6:]) for line in out.decode().splitlines() if line.startswith("data: {")]
    assert "".join(c["text"] for e in lines[:2] for c in e["choices"]) == f"to {EMAIL}."
    assert lines[2]["text"] == f"to {EMAIL}."
    body = json.dumps({"object": "response", "output": [{"content": [{"text": "<EMAIL_ADDRESS_1>"}]}]}).encode()
    assert json.loads(restore_completion(body, m))["output"][0]["content"][0]["text"] == EMAIL


@pytest.mark.parametrize(
    "calls", [5, "x", None, [1, [2]], {"a": 1}, [{"function": 3}], [{"function": {"arguments": 4}}]]
)
def test_odd_tool_calls_are_left_alone(calls: object) -> None:
    m = masking(entity("EMAIL_ADDRESS", EMAIL))
    body: dict[str, Any] = {"messages": [{"role": "assistant", "content": EMAIL, "tool_calls": calls}]}
    mask_body(body, m)
    assert body["messages"][0]["content"] == "<EMAIL_ADDRESS_1>"
    stream = b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": calls}}]}).encode() + b"\n\n"
    restorer = StreamRestorer(m)
    assert restorer.feed(stream) + restorer.flush()


def test_a_body_too_deep_to_walk_is_refused_not_sent() -> None:
    m = masking(entity("EMAIL_ADDRESS", EMAIL))
    deep: Any = EMAIL
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(InvalidRequest):
        mask_any_body({"model": "m", "input": deep}, m)
    raw = b"[" * 5000 + b"]" * 5000
    assert restore_completion(raw, m) == raw
