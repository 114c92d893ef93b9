"""Every key the config schema parses acts or says it does not.

`KEYS` classifies every leaf key path of the schema (every field of every model, `triton_router:` included; `*`
stands for the extra keys a free-form section accepts): either the module that reads it, or `IGNORED`. An ignored
key is flagged in its schema class (`VSR_MODEL_KEYS`, `NOT_APPLIED_KEYS`, `EXTRA_KIND`), which puts it in the
"ignored keys" log lines, and has an "ignored (logged)" row in docs/config.md's table of VSR classic keys. A field
added to the schema without that decision fails `test_every_schema_key_is_classified`.
"""

from __future__ import annotations

import ast
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from router_service.config import RouterConfig, load_config
from router_service.config.schema import key_step

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "tests" / "fixtures" / "vsr-classic"  # vendored, see its NOTICE.md
IGNORED = "ignored"

SCHEMA = "router_service/config/schema.py"  # a section's own method (e.g. KeywordRule.matches) reads the key
POLICY = "router_service/config/policy.py"

KEYS: dict[str, str] = {
    "bert_model.model_id": IGNORED,
    "bert_model.threshold": POLICY,
    "bert_model.use_cpu": IGNORED,
    "semantic_cache.enabled": POLICY,
    "semantic_cache.similarity_threshold": POLICY,
    "semantic_cache.ttl_seconds": "router_service/accounting.py",
    "semantic_cache.max_entries": "local_stack/stack.py",
    "semantic_cache.backend_type": IGNORED,
    "semantic_cache.backend_config_path": IGNORED,
    "semantic_cache.eviction_policy": IGNORED,
    "semantic_cache.use_hnsw": IGNORED,
    "semantic_cache.hnsw_m": IGNORED,
    "semantic_cache.hnsw_ef_construction": IGNORED,
    "semantic_cache.max_memory_entries": IGNORED,
    "semantic_cache.embedding_model": IGNORED,
    "semantic_cache.redis": IGNORED,
    "semantic_cache.milvus": IGNORED,
    "tools.enabled": "router_service/app.py",
    "tools.top_k": "router_service/core/routing.py",
    "tools.similarity_threshold": POLICY,
    "tools.tools_db_path": "router_service/core/tools.py",
    "tools.fallback_to_empty": "router_service/core/routing.py",
    "prompt_guard.enabled": POLICY,
    "prompt_guard.threshold": POLICY,
    "prompt_guard.model_id": IGNORED,
    "prompt_guard.use_cpu": IGNORED,
    "prompt_guard.use_modernbert": IGNORED,
    "prompt_guard.jailbreak_mapping_path": IGNORED,
    "vllm_endpoints[].name": POLICY,
    "vllm_endpoints[].address": SCHEMA,
    "vllm_endpoints[].port": SCHEMA,
    "vllm_endpoints[].weight": POLICY,
    "vllm_endpoints[].health_check_path": IGNORED,
    "model_config.<name>.reasoning_family": POLICY,
    "model_config.<name>.preferred_endpoints": POLICY,
    "model_config.<name>.pii_policy.allow_by_default": SCHEMA,
    "model_config.<name>.pii_policy.pii_types_allowed": SCHEMA,
    "model_config.<name>.pii_policy.action": SCHEMA,
    "model_config.<name>.pii_policy.restore": "router_service/core/decision.py",
    "model_config.<name>.pricing.currency": "router_service/accounting.py",
    "model_config.<name>.pricing.prompt_per_1m": "router_service/accounting.py",
    "model_config.<name>.pricing.completion_per_1m": "router_service/accounting.py",
    "model_config.<name>.loras": IGNORED,
    "model_config.<name>.use_reasoning": IGNORED,
    "model_config.<name>.param_size": IGNORED,
    "classifier.category_model.threshold": "router_service/core/routing.py",
    "classifier.category_model.model_id": IGNORED,
    "classifier.category_model.use_cpu": IGNORED,
    "classifier.category_model.use_modernbert": IGNORED,
    "classifier.category_model.category_mapping_path": IGNORED,
    "classifier.pii_model.threshold": POLICY,
    "classifier.pii_model.model_id": IGNORED,
    "classifier.pii_model.use_cpu": IGNORED,
    "classifier.pii_model.use_modernbert": IGNORED,
    "classifier.pii_model.pii_mapping_path": IGNORED,
    "classifier.mcp_category_model": IGNORED,
    "categories[].name": POLICY,
    "categories[].description": IGNORED,
    "categories[].mmlu_categories": POLICY,
    "categories[].system_prompt": "router_service/core/routing.py",
    "categories[].system_prompt_enabled": SCHEMA,
    "categories[].system_prompt_mode": "router_service/core/routing.py",
    "categories[].semantic_cache_enabled": POLICY,
    "categories[].semantic_cache_similarity_threshold": POLICY,
    "categories[].jailbreak_enabled": POLICY,
    "categories[].jailbreak_threshold": POLICY,
    "categories[].pii_enabled": POLICY,
    "categories[].pii_threshold": POLICY,
    "categories[].model_scores[].model": "router_service/core/routing.py",
    "categories[].model_scores[].score": SCHEMA,
    "categories[].model_scores[].use_reasoning": "router_service/core/routing.py",
    "categories[].model_scores[].reasoning_effort": "router_service/core/routing.py",
    "categories[].model_scores[].reasoning_description": IGNORED,
    "categories[].model_scores[].lora_name": "router_service/core/routing.py",
    "router": IGNORED,
    "default_model": "router_service/core/routing.py",
    "reasoning_families.<name>.type": "router_service/core/routing.py",
    "reasoning_families.<name>.parameter": "router_service/core/routing.py",
    "default_reasoning_effort": "router_service/core/routing.py",
    "api.batch_classification.max_batch_size": SCHEMA,
    "api.batch_classification.*": IGNORED,
    "api.*": IGNORED,
    "embedding_models.qwen3_model_path": IGNORED,
    "embedding_models.gemma_model_path": IGNORED,
    "embedding_models.use_cpu": IGNORED,
    "embedding_models.hnsw_config": IGNORED,
    "embedding_models.*": IGNORED,
    "observability.tracing": "router_service/tracing.py",
    "observability.*": IGNORED,
    "auto_model_name": POLICY,
    "include_config_models_in_list": "router_service/core/render.py",
    "clear_route_cache": IGNORED,
    "keyword_rules[].category": "router_service/core/routing.py",
    "keyword_rules[].operator": SCHEMA,
    "keyword_rules[].keywords": SCHEMA,
    "keyword_rules[].case_sensitive": SCHEMA,
    "embedding_rules": IGNORED,
    "triton_router.block_response": "router_service/core/render.py",
    "triton_router.failure_policy.classification": "router_service/core/decision.py",
    "triton_router.failure_policy.jailbreak": "router_service/core/guards.py",
    "triton_router.failure_policy.pii": "router_service/core/decision.py",
    "triton_router.log_prompts": "router_service/router.py",
    "triton_router.cache_tenant_header": "router_service/router.py",
    "triton_router.admin_token": "router_service/app.py",
    "triton_router.rate_limit.enabled": "router_service/router.py",
    "triton_router.rate_limit.requests_per_second": "router_service/ratelimit.py",
    "triton_router.rate_limit.burst": "router_service/ratelimit.py",
    "triton_router.rate_limit.tenant_header": "router_service/router.py",
    "triton_router.rate_limit.max_tenants": "router_service/ratelimit.py",
    "triton_router.conversation.enabled": "router_service/core/conversation.py",
    "triton_router.conversation.header": "router_service/core/conversation.py",
    "triton_router.conversation.ttl_seconds": "router_service/router.py",
    "triton_router.conversation.switch_confidence": "router_service/core/conversation.py",
}


# --- walking the schema ---------------------------------------------------------------------------------


def _unwrap(tp: Any) -> Any:
    """`X | None` → X, `Annotated[X, ...]` → X."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        elif get_origin(tp) in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _container(tp: Any) -> tuple[str, Any] | None:
    """`tuple[Model, ...]` → ("[]", Model), `dict[str, Model]` → (".<name>", Model), else None."""
    tp = _unwrap(tp)
    if get_origin(tp) in (tuple, list) and _is_model(_unwrap(get_args(tp)[0])):
        return "[]", _unwrap(get_args(tp)[0])
    if get_origin(tp) is dict and _is_model(_unwrap(get_args(tp)[1])):
        return ".<name>", _unwrap(get_args(tp)[1])
    return None


def _flagged(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(getattr(model, "VSR_MODEL_KEYS", frozenset()) | getattr(model, "NOT_APPLIED_KEYS", frozenset()))


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def schema_keys(model: type[BaseModel] = RouterConfig, prefix: str = "") -> Iterator[tuple[str, bool]]:
    """(leaf key path, flagged as ignored) for every field; a flagged field is a leaf (its content is not read)."""
    for name, field in model.model_fields.items():
        path = _join(prefix, field.alias or name)
        if name in _flagged(model):
            yield path, True
            continue
        inner = _unwrap(field.annotation)
        while (step := _container(inner)) is not None:
            path, inner = path + step[0], step[1]
        if _is_model(inner) and inner.model_fields:
            yield from schema_keys(inner, path)
        else:
            yield path, False
    if model.model_config.get("extra") == "allow":
        yield _join(prefix, "*"), getattr(model, "EXTRA_KIND", None) is not None


def file_keys(
    raw: Any, model: type[BaseModel] = RouterConfig, path: str = "", schema_path: str = ""
) -> Iterator[tuple[str, str]]:
    """(concrete key path as the log writes it, schema key path) of every leaf key a config file sets."""
    fields = {f.alias or n: (n, f) for n, f in model.model_fields.items()}
    for key, value in raw.items():
        here = f"{path}{key_step(key)}".lstrip(".")
        if key not in fields:
            yield here, _join(schema_path, "*")
            continue
        name, field = fields[key]
        spath = _join(schema_path, key)
        if name in _flagged(model):
            yield here, spath
            continue
        yield from _value_keys(value, field.annotation, here, spath)


def _value_keys(value: Any, annotation: Any, path: str, spath: str) -> Iterator[tuple[str, str]]:
    step = _container(annotation)
    inner = _unwrap(annotation)
    if step is not None and step[0] == "[]":
        for i, item in enumerate(value or ()):
            yield from _value_keys(item, step[1], f"{path}[{i}]", spath + "[]")
    elif step is not None:
        for k, item in (value or {}).items():
            yield from _value_keys(item, step[1], f"{path}{key_step(str(k))}", spath + ".<name>")
    elif _is_model(inner) and inner.model_fields and isinstance(value, dict):
        yield from file_keys(value, inner, path, spath)
    else:
        yield path, spath


def _last_name(path: str) -> str:
    return path.replace("[]", "").rsplit(".", 1)[-1]


# --- the rules ------------------------------------------------------------------------------------------


def test_every_schema_key_is_classified() -> None:
    keys = dict(schema_keys())
    unclassified = sorted(set(keys) - set(KEYS))
    assert not unclassified, (
        f"new config keys: add each to KEYS with the module that reads it, or ignore it: {unclassified}"
    )
    assert not sorted(set(KEYS) - set(keys)), "KEYS names keys the schema no longer has"


@pytest.mark.parametrize("path", sorted(KEYS))
def test_ignored_keys_are_flagged_and_used_keys_are_not(path: str) -> None:
    flagged = dict(schema_keys())[path]
    if KEYS[path] == IGNORED:
        assert flagged, f"{path} is classified ignored but its class does not flag it, so the log would not name it"
    else:
        assert not flagged, f"{path} is flagged (logged as having no effect) yet classified as read by {KEYS[path]}"


def _reads(module: Path, name: str) -> bool:
    """`module` reads `name`: an attribute access `.name`, `x.get("name")` or `x["name"]` (raw YAML data)."""
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Attribute) and node.attr == name:
            return True
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == name
        ):
            return True
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value == name:
            return True
    return False


@pytest.mark.parametrize("path", sorted(p for p, where in KEYS.items() if where != IGNORED))
def test_used_keys_are_read_where_named(path: str) -> None:
    module = ROOT / KEYS[path]
    assert _reads(module, _last_name(path)), f"{KEYS[path]} does not read {_last_name(path)!r} ({path})"


def _docs_ignored_patterns() -> list[re.Pattern[str]]:
    """One regex per key named in an "ignored (logged)" row of docs/config.md's VSR key table.

    A row's cell lists keys in backticks: `.x` continues the previous key's prefix (`classifier.*.model_id`,
    `.use_cpu` → `classifier.*.use_cpu`), a trailing `[]` is dropped, `*` is any part of a path, `<m>`/`<f>` is a
    map key, and `x.*` covers x too."""
    text = (ROOT / "docs" / "config.md").read_text()
    table = text.split("| key | status | here |", 1)[1].split("\n\n", 1)[0]
    patterns: list[re.Pattern[str]] = []
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 2 or cells[1] != "ignored (logged)":
            continue
        previous = ""
        for token in re.findall(r"`([^`]+)`", cells[0]):
            if token.startswith("."):
                token = previous.rsplit(".", 1)[0] + token
            previous = token
            token = re.sub(r"<[a-z]+>", "<name>", token).removesuffix("[]")
            regex = re.escape(token).replace(r"\*", ".*")
            if token.endswith(".*"):
                regex = re.escape(token[:-2]) + r"(\..*)?"
            patterns.append(re.compile(regex))
    return patterns


@pytest.mark.parametrize("path", sorted(p for p, where in KEYS.items() if where == IGNORED))
def test_ignored_keys_are_in_the_docs_table(path: str) -> None:
    assert any(p.fullmatch(path) for p in _docs_ignored_patterns()), f"docs/config.md has no ignored row for {path}"


@pytest.mark.parametrize("name", ["config.yaml", "config.e2e.yaml"])
def test_reference_files_log_exactly_their_ignored_keys(name: str) -> None:
    """Every key a reference file sets is classified; the log lines name exactly those classified ignored."""
    raw = yaml.safe_load((REFERENCE / name).read_text())
    cfg = load_config(REFERENCE / name)
    logged = set(cfg.vsr_model_keys()) | set(cfg.not_applied_keys())
    set_keys = dict(file_keys(raw))
    assert set_keys, "the walk found no keys"
    unknown = sorted(s for s in set_keys.values() if s not in KEYS)
    assert not unknown, f"keys of {name} missing from KEYS: {unknown}"
    expected = {concrete for concrete, spath in set_keys.items() if KEYS[spath] == IGNORED}
    assert logged == expected


def test_an_unclassified_field_fails() -> None:
    """The classifier check itself: a schema with one more field reports it."""

    class Extended(RouterConfig):
        brand_new_knob: int = 0

    assert ("brand_new_knob", False) in list(schema_keys(Extended))
    assert "brand_new_knob" not in KEYS
