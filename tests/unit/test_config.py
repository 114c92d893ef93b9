"""The config schema (reference files, key-path error messages, semantics, redaction) and ConfigStore."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from router_service.config import Endpoint, KeywordRule, PiiPolicy, RouterConfig, load_config, parse_config
from router_service.config.store import ConfigStore
from router_service.errors import ConfigError

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "vsr-classic"  # vendored, see its NOTICE.md
E2E = yaml.safe_load((REFERENCE / "config.e2e.yaml").read_text())


def e2e_with(change: Callable[[dict[str, Any]], None]) -> str:
    raw = copy.deepcopy(E2E)
    change(raw)
    return yaml.safe_dump(raw)


def errors_of(text: str) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "test.yaml")
    return err.value.messages


# --- the reference files ----------------------------------------------------------------------------


def test_main_reference_config_loads_unchanged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="router_service.config"):
        cfg = load_config(REFERENCE / "config.yaml")
    assert cfg.default_model == "qwen3"
    assert [c.name for c in cfg.categories][:3] == ["business", "law", "psychology"]
    assert cfg.router is not None and cfg.router["lora_baseline_score"] == 0.8  # VSR's own `router:` kept
    assert cfg.category("psychology") is not None
    assert cfg.cache_threshold(cfg.category("psychology")) == 0.92
    assert cfg.reasoning_family_for("qwen3") is not None
    assert cfg.tools.enabled and cfg.tools.top_k == 3 and cfg.tools_threshold == 0.2
    assert cfg.api.batch_classification.max_batch_size == 100
    model_lines = [r.getMessage() for r in caplog.records if "model-file keys" in r.getMessage()]
    assert len(model_lines) == 1
    for key in (
        "bert_model.model_id",
        "classifier.pii_model.pii_mapping_path",
        "prompt_guard.use_modernbert",
    ):
        assert key in model_lines[0]
    assert "embedding_models.qwen3_model_path" in model_lines[0]


def test_e2e_reference_config_loads_unchanged() -> None:
    cfg = load_config(REFERENCE / "config.e2e.yaml")
    assert cfg.default_model == "Model-A"
    assert cfg.all_models() == ("Model-A", "Model-B")
    assert [e.host_port for e in cfg.vllm_endpoints] == ["127.0.0.1:8000", "127.0.0.1:8001"]
    assert cfg.vllm_endpoints[0].health_check_path == "/health"
    assert cfg.default_reasoning_effort == "medium"
    assert cfg.pii_policy_for("Model-A").allows("EMAIL_ADDRESS")
    assert not cfg.pii_policy_for("Model-A").allows("PERSON")
    assert cfg.pii_policy_for("Model-B").allows("IBAN_CODE")
    assert cfg.best_model_for("math") == "Model-B"
    assert cfg.default_endpoint() == "127.0.0.1:8000"
    assert "model_config.Model-A.use_reasoning" in cfg.not_applied_keys()


def test_defaults_of_our_section() -> None:
    tr = load_config(REFERENCE / "config.e2e.yaml").triton_router
    assert tr.block_response == "content_filter"  # a VSR config without our section answers refusals as VSR does
    assert (tr.failure_policy.classification, tr.failure_policy.jailbreak, tr.failure_policy.pii) == (
        "open",
        "closed",
        "closed",
    )
    assert tr.log_prompts is False
    assert tr.cache_tenant_header == "x-user-id"


def test_our_section_is_read() -> None:
    text = e2e_with(
        lambda raw: raw.update(
            triton_router={
                "block_response": "openai_error",
                "failure_policy": {"jailbreak": "open"},
                "log_prompts": True,
                "cache_tenant_header": "X-Tenant",
            }
        )
    )
    tr = parse_config(text).triton_router
    assert tr.block_response == "openai_error" and tr.failure_policy.jailbreak == "open"
    assert tr.failure_policy.pii == "closed" and tr.log_prompts and tr.cache_tenant_header == "x-tenant"


def test_our_deploy_config_states_its_block_form() -> None:
    """The default is VSR's form; our own config keeps the 403 and says so explicitly."""
    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "deploy" / "config.yaml").read_text())
    assert raw["triton_router"]["block_response"] == "openai_error"


def test_vsr_keys_without_effect_are_logged(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    def change(raw: dict[str, Any]) -> None:
        raw["semantic_cache"]["redis"] = {"address": "127.0.0.1:6379"}
        raw["model_config"]["Model-A"]["loras"] = [{"name": "math-adapter"}]

    path = tmp_path / "c.yaml"
    path.write_text(e2e_with(change))
    with caplog.at_level(logging.INFO, logger="router_service.config"):
        cfg = load_config(path)
    (line,) = [r.getMessage() for r in caplog.records if "no effect here" in r.getMessage()]
    for key in (
        "semantic_cache.redis",
        "vllm_endpoints[0].health_check_path",
        "vllm_endpoints[1].health_check_path",
        "model_config.Model-A.loras",
    ):
        assert key in line and key in cfg.not_applied_keys()
    # acted on, so not in the line: the batch limit bounds the batch endpoint
    assert "max_batch_size" not in line


@pytest.mark.parametrize(("value", "effective"), [(None, 100), (0, 100), (3, 3), (500, 500)])
def test_batch_limit_follows_vsr_semantics(value: int | None, effective: int) -> None:
    def change(raw: dict[str, Any]) -> None:
        if value is not None:
            raw["api"] = {"batch_classification": {"max_batch_size": value, "max_concurrency": 8}}

    batch = parse_config(e2e_with(change)).api.batch_classification
    assert batch.effective_max_batch_size == effective


# --- errors with key paths --------------------------------------------------------------------------


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        node: Any = raw
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return change


def _delete(path: list[Any]) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        node: Any = raw
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]

    return change


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            _set(["categories", 3, "model_scores", 0, "score"], 1.5),
            "categories[3].model_scores[0].score: Input should be less than or equal to 1",
            id="score-above-1",
        ),
        pytest.param(
            _set(["prompt_guard", "treshold"], 0.5),
            "prompt_guard.treshold: unknown key; did you mean 'threshold'?",
            id="typo-suggests",
        ),
        pytest.param(
            _set(["categories", 0, "jailbreak_treshold"], 0.5),
            "categories[0].jailbreak_treshold: unknown key; did you mean 'jailbreak_threshold'?",
            id="typo-in-list-item",
        ),
        pytest.param(
            _set(["defualt_model"], "x"),
            "defualt_model: unknown key; did you mean 'default_model'?",
            id="top",
        ),
        pytest.param(_delete(["default_model"]), "default_model: required key is missing", id="missing-default"),
        pytest.param(
            _set(["model_config", "Model-A", "preferred_endpoints"], ["nope"]),
            "model_config.Model-A.preferred_endpoints[0]: unknown endpoint 'nope' "
            "(known: qwen-endpoint, tinyllama-endpoint)",
            id="unknown-endpoint",
        ),
        pytest.param(
            _set(["model_config", "Model-A", "reasoning_family"], "llama"),
            "model_config.Model-A.reasoning_family: unknown reasoning family 'llama'",
            id="unknown-family",
        ),
        pytest.param(
            _set(["default_model"], "Model-Z"),
            "default_model: 'Model-Z' is in neither model_config nor any model_scores",
            id="unknown-default-model",
        ),
        pytest.param(
            _set(["keyword_rules"], [{"category": "cooking", "keywords": ["pan"]}]),
            "keyword_rules[0].category: unknown category 'cooking'",
            id="keyword-unknown-category",
        ),
        pytest.param(
            _set(["keyword_rules"], [{"category": "law", "operator": "XOR", "keywords": ["x"]}]),
            "keyword_rules[0].operator: Input should be 'AND', 'OR' or 'NOR'",
            id="keyword-operator",
        ),
        pytest.param(
            _set(["vllm_endpoints", 0, "address"], "http://10.0.0.1"),
            "vllm_endpoints[0].address: must be a bare IP address or host name",
            id="address-scheme",
        ),
        pytest.param(
            _set(["vllm_endpoints", 0, "address"], "10.0.0.1:8000"),
            "vllm_endpoints[0].address: must not contain a port",
            id="address-port",
        ),
        pytest.param(
            _set(["vllm_endpoints", 1, "port"], 70000),
            "vllm_endpoints[1].port: Input should be less than or equal to 65535",
            id="port-range",
        ),
        pytest.param(
            _set(["vllm_endpoints", 1, "name"], "qwen-endpoint"),
            "vllm_endpoints[1].name: duplicate endpoint name 'qwen-endpoint'",
            id="duplicate-endpoint",
        ),
        pytest.param(
            _set(["categories", 1, "name"], "business"),
            "categories[1].name: duplicate category 'business'",
            id="duplicate-category",
        ),
        pytest.param(
            _set(["categories", 0, "system_prompt_mode"], "append"),
            "categories[0].system_prompt_mode: Input should be 'replace' or 'insert'",
            id="prompt-mode",
        ),
        pytest.param(
            _set(["categories", 0, "system_prompt_enabled"], True),
            "categories[0].system_prompt_enabled: true but the category has no system_prompt",
            id="prompt-enabled-without-prompt",
        ),
        pytest.param(
            _set(["vllm_endpoints"], []),
            "vllm_endpoints: List should have at least 1 item",
            id="no-endpoints",
        ),
        pytest.param(
            _set(["reasoning_families", "gpt", "type"], "magic"),
            "reasoning_families.gpt.type: Input should be 'chat_template_kwargs' or 'reasoning_effort'",
            id="family-type",
        ),
        pytest.param(
            _set(["triton_router"], {"failure_policy": {"jailbreak": "maybe"}}),
            "triton_router.failure_policy.jailbreak: Input should be 'open' or 'closed'",
            id="failure-policy",
        ),
        pytest.param(
            _set(["triton_router"], {"cache_tenant_header": "x user"}),
            "triton_router.cache_tenant_header: must be an HTTP header name",
            id="tenant-header",
        ),
        pytest.param(
            _set(["semantic_cache", "similarity_threshold"], -0.1),
            "semantic_cache.similarity_threshold: Input should be greater than or equal to 0",
            id="cache-threshold",
        ),
        pytest.param(
            _set(["tools", "top_k"], 0), "tools.top_k: Input should be greater than or equal to 1", id="top-k"
        ),
        pytest.param(
            _set(["categories", 0, "model_scores", 0, "reasoning_effort"], "extreme"),
            "categories[0].model_scores[0].reasoning_effort: Input should be",
            id="effort",
        ),
    ],
)
def test_bad_config_messages_name_the_key(change: Callable[[dict[str, Any]], None], expected: str) -> None:
    messages = errors_of(e2e_with(change))
    assert any(m.startswith(expected) for m in messages), messages


def test_all_problems_are_reported_at_once() -> None:
    def two_problems(raw: dict[str, Any]) -> None:
        raw["prompt_guard"]["threshold"] = 2
        raw["tools"]["top_k"] = "many"

    messages = errors_of(e2e_with(two_problems))
    assert len(messages) == 2
    assert {m.split(":")[0] for m in messages} == {"prompt_guard.threshold", "tools.top_k"}


def test_odd_model_names_are_quoted_in_paths() -> None:
    def odd(raw: dict[str, Any]) -> None:
        raw["model_config"]["org/model v1"] = {"preferred_endpoints": ["gone"]}

    messages = errors_of(e2e_with(odd))
    assert any(m.startswith('model_config["org/model v1"].preferred_endpoints[0]: unknown endpoint') for m in messages)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("a: [1, 2\nb: 3\n", "YAML syntax error: line", id="yaml-syntax"),
        pytest.param("", "the file is empty", id="empty"),
        pytest.param("- 1\n- 2\n", "the top level must be a mapping", id="list"),
    ],
)
def test_unparseable_files(text: str, expected: str) -> None:
    assert errors_of(text)[0].startswith(expected)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file") as err:
        load_config(tmp_path / "nope.yaml")
    assert err.value.source == str(tmp_path / "nope.yaml")


def test_config_error_lists_every_message() -> None:
    err = ConfigError(["a.b: bad", "c: worse"], "x.yaml")
    assert str(err) == "invalid router config x.yaml:\n  a.b: bad\n  c: worse"
    assert err.status == 500 and err.code == "invalid_config"


# --- semantics ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "pii_type", "allowed"),
    [
        pytest.param({}, "US_SSN", True, id="no-policy-allows-all"),
        pytest.param({"allow_by_default": True}, "US_SSN", True, id="allow-by-default"),
        pytest.param(
            {"allow_by_default": True, "pii_types_allowed": ["PERSON"]},
            "US_SSN",
            True,
            id="true-ignores-list",
        ),
        pytest.param({"allow_by_default": False}, "US_SSN", False, id="deny-all"),
        pytest.param({"allow_by_default": False, "pii_types_allowed": ["US_SSN"]}, "US_SSN", True, id="listed"),
        pytest.param({"pii_types_allowed": ["PERSON"]}, "US_SSN", False, id="list-alone-restricts"),
        pytest.param({"pii_types_allowed": ["PERSON"]}, "PERSON", True, id="list-alone-allows-listed"),
    ],
)
def test_pii_policy(policy: dict[str, Any], pii_type: str, allowed: bool) -> None:
    assert PiiPolicy.model_validate(policy).allows(pii_type) is allowed


def _cfg_with_endpoints(models: dict[str, Any], default: str) -> RouterConfig:
    return RouterConfig.model_validate(
        {
            "vllm_endpoints": [
                {"name": "a", "address": "10.0.0.1", "port": 1, "weight": 1},
                {"name": "b", "address": "10.0.0.2", "port": 2, "weight": 3},
                {"name": "c", "address": "::1", "port": 3, "weight": 2},
            ],
            "model_config": models,
            "default_model": default,
        }
    )


@pytest.mark.parametrize(
    ("models", "default", "model", "expected"),
    [
        pytest.param({"m": {"preferred_endpoints": ["a", "b"]}}, "m", "m", ["10.0.0.2:2", "10.0.0.1:1"], id="weight"),
        pytest.param(
            {"m": {"preferred_endpoints": ["a"]}, "d": {"preferred_endpoints": ["c"]}},
            "d",
            "unknown",
            ["[::1]:3"],
            id="unknown-to-default-ipv6",
        ),
        pytest.param({"m": {}}, "m", "m", ["10.0.0.2:2", "[::1]:3", "10.0.0.1:1"], id="no-preference-all"),
    ],
)
def test_endpoints_for(models: dict[str, Any], default: str, model: str, expected: list[str]) -> None:
    cfg = _cfg_with_endpoints(models, default)
    assert [e.host_port for e in cfg.endpoints_for(model)] == expected


def test_endpoint_accepts_bracketed_ipv6() -> None:
    ep = Endpoint(name="x", address="[2001:db8::1]", port=80)
    assert (ep.address, ep.host_port) == ("2001:db8::1", "[2001:db8::1]:80")


def test_keyword_rule_accepts_later_vsr_spelling() -> None:
    rule = KeywordRule.model_validate({"name": "law", "operator": "and", "keywords": ["a", "b"]})
    assert (rule.category, rule.operator) == ("law", "AND")
    assert rule.matches("b then a") and not rule.matches("a only")


def test_config_is_immutable() -> None:
    cfg = load_config(REFERENCE / "config.e2e.yaml")
    with pytest.raises(ValueError, match="frozen"):
        cfg.default_model = "Model-B"


# --- redaction -----------------------------------------------------------------------------------


def test_redacted_hides_secrets_only() -> None:
    def secrets(raw: dict[str, Any]) -> None:
        raw["semantic_cache"]["redis"] = {
            "connection": {"host": "r", "password": "hunter2"},
            "url": "redis://user:pw@r:6379/0",
        }
        headers = {"X-Auth-Token": "t1", "x-honeycomb-team": "h1"}
        raw["observability"] = {"tracing": {"exporter": {"api_key": "k1", "headers": headers}}}
        raw["api"]["apikey"] = "k2"
        raw["api"]["client_secret"] = "s1"
        raw["keyword_rules"] = [{"category": "law", "keywords": ["contract"]}]

    data = parse_config(e2e_with(secrets)).redacted()
    redis = data["semantic_cache"]["redis"]
    assert redis["connection"] == {"host": "r", "password": "***"}
    assert redis["url"] == "redis://***@r:6379/0"
    exporter = data["observability"]["tracing"]["exporter"]
    assert exporter == {"api_key": "***", "headers": {"X-Auth-Token": "***", "x-honeycomb-team": "***"}}
    assert (data["api"]["apikey"], data["api"]["client_secret"]) == ("***", "***")
    assert data["keyword_rules"][0]["keywords"] == ["contract"]
    assert data["model_config"]["Model-A"]["pii_policy"]["pii_types_allowed"] == ["EMAIL_ADDRESS"]
    assert data["default_model"] == "Model-A"
    assert "hunter2" not in repr(data) and "k1" not in repr(data) and "h1" not in repr(data)


# --- ConfigStore -----------------------------------------------------------------------------------

GOOD = (REFERENCE / "config.e2e.yaml").read_text()
OTHER_DEFAULT = GOOD.replace('default_model: "Model-A"', 'default_model: "Model-B"')
BROKEN = GOOD.replace("threshold: 0.7\n  use_cpu", "threshold: 7\n  use_cpu", 1)


class Recorder:
    def __init__(self) -> None:
        self.loaded: list[RouterConfig] = []
        self.errors: list[Exception] = []

    def store(self, path: Path, **kwargs: Any) -> ConfigStore:
        return ConfigStore(path, self.errors.append, self.loaded.append, **kwargs)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD)
    return path


def test_store_swaps_a_good_new_file(config_file: Path) -> None:
    rec = Recorder()
    store = rec.store(config_file)
    first = store.current
    config_file.write_text(OTHER_DEFAULT)
    assert store.reload_now() is True
    assert store.current.default_model == "Model-B" and store.current is not first
    assert [c.default_model for c in rec.loaded] == ["Model-B"] and rec.errors == []


def test_store_keeps_the_old_config_on_a_bad_file(config_file: Path) -> None:
    rec = Recorder()
    store = rec.store(config_file)
    first = store.current
    config_file.write_text(BROKEN)
    assert BROKEN != GOOD
    assert store.reload_now() is False
    assert store.current is first
    assert len(rec.errors) == 1 and isinstance(rec.errors[0], ConfigError)
    assert "prompt_guard.threshold" in str(rec.errors[0])
    assert store.reload_now() is False and len(rec.errors) == 1  # the same bad file is reported once
    config_file.write_text(OTHER_DEFAULT)
    assert store.reload_now() is True and store.current.default_model == "Model-B"


def test_store_reports_a_vanished_file(config_file: Path) -> None:
    rec = Recorder()
    store = rec.store(config_file)
    config_file.unlink()
    assert store.reload_now() is False
    assert "cannot read the file" in str(rec.errors[0]) and store.current.default_model == "Model-A"


def test_store_ignores_unchanged_content(config_file: Path) -> None:
    rec = Recorder()
    store = rec.store(config_file)
    config_file.write_text(GOOD)
    assert store.reload_now() is False and rec.loaded == [] and rec.errors == []


def test_store_back_to_the_live_content_is_not_a_reload(config_file: Path) -> None:
    rec = Recorder()
    store = rec.store(config_file)
    config_file.write_text(BROKEN)
    store.reload_now()
    config_file.write_text(GOOD)
    assert store.reload_now() is False and rec.loaded == [] and store.current.default_model == "Model-A"


def test_store_survives_a_failing_callback(config_file: Path) -> None:
    def explode(_: RouterConfig) -> None:
        raise RuntimeError("observer bug")

    store = ConfigStore(config_file, on_reload=explode)
    config_file.write_text(OTHER_DEFAULT)
    assert store.reload_now() is True and store.current.default_model == "Model-B"


def test_store_refuses_a_bad_initial_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(BROKEN)
    with pytest.raises(ConfigError, match=r"prompt_guard\.threshold"):
        ConfigStore(path)


async def test_store_watcher_follows_the_real_file(config_file: Path) -> None:
    loaded = asyncio.Event()
    rejected = asyncio.Event()
    store = ConfigStore(config_file, lambda _: rejected.set(), lambda _: loaded.set(), debounce_ms=50)
    stop = asyncio.Event()
    task = asyncio.create_task(store.watch(stop))
    try:
        await _write_until(config_file, BROKEN, rejected)
        assert store.current.default_model == "Model-A"
        tmp = config_file.with_suffix(".tmp")  # an editor's atomic save: write elsewhere, rename over
        await asyncio.to_thread(tmp.write_text, OTHER_DEFAULT)
        await asyncio.to_thread(tmp.replace, config_file)
        await asyncio.wait_for(loaded.wait(), timeout=10)
        assert store.current.default_model == "Model-B"
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
    assert task.done() and task.exception() is None


async def _write_until(path: Path, text: str, event: asyncio.Event) -> None:
    """The watcher needs a moment to arm; rewrite until it has seen the change."""
    for _ in range(40):
        await asyncio.to_thread(path.write_text, text)
        try:
            await asyncio.wait_for(event.wait(), timeout=0.25)
            return
        except TimeoutError:
            continue
    raise AssertionError("the watcher never reported the change")


def test_semantic_cache_max_entries_reaches_the_cache_service(tmp_path: Path) -> None:
    """The stack starts the cache service with the router config's bound (VSR's key, applied where the cache is)."""
    from local_stack.stack import _cache_limits

    path = tmp_path / "c.yaml"
    path.write_text(e2e_with(lambda raw: raw["semantic_cache"].update(max_entries=250)))
    assert _cache_limits(path) == ["--max-entries", "250"]
    path.write_text(e2e_with(lambda raw: raw["semantic_cache"].pop("max_entries", None)))
    assert _cache_limits(path) == []
