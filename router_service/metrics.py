"""Prometheus metrics under VSR's names (so existing dashboards keep working), on the router's own registry.

The cache service has its own /metrics as well (evictions, stores, hit kinds); the entry count is mirrored here."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from router_service.config import RouterConfig

__all__ = ["REGISTRY", "model_label"]

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

MODEL_REQUESTS = Counter("llm_model_requests", "Requests routed to each model", ["model"], registry=REGISTRY)
REQUEST_ERRORS = Counter(
    "llm_request_errors", "Request errors by model and reason", ["model", "reason"], registry=REGISTRY
)
PROMPT_TOKENS = Counter(
    "llm_model_prompt_tokens", "Prompt tokens reported by the backend", ["model"], registry=REGISTRY
)
COMPLETION_TOKENS = Counter(
    "llm_model_completion_tokens", "Completion tokens reported by the backend", ["model"], registry=REGISTRY
)
MODEL_TOKENS = Counter(
    "llm_model_tokens", "Prompt plus completion tokens reported by the backend", ["model"], registry=REGISTRY
)
_TOKEN_BUCKETS = (0, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
PROMPT_TOKENS_PER_REQUEST = Histogram(
    "llm_prompt_tokens_per_request", "Prompt tokens per request", ["model"], buckets=_TOKEN_BUCKETS, registry=REGISTRY
)
COMPLETION_TOKENS_PER_REQUEST = Histogram(
    "llm_completion_tokens_per_request",
    "Completion tokens per request",
    ["model"],
    buckets=_TOKEN_BUCKETS,
    registry=REGISTRY,
)
COMPLETION_LATENCY = Histogram(
    "llm_model_completion_latency_seconds",
    "Upstream completion latency (request sent to last byte)",
    ["model"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
TTFT = Histogram(
    "llm_model_ttft_seconds", "Time to first token", ["model"], buckets=_LATENCY_BUCKETS, registry=REGISTRY
)
TPOT = Histogram(
    "llm_model_tpot_seconds",
    "Time per output token after the first",
    ["model"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1),
    registry=REGISTRY,
)
ROUTING_LATENCY = Histogram(
    "llm_model_routing_latency_seconds",
    "Time the router spent deciding (signals, cache lookup, decision)",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
CLASSIFIER_LATENCY = Histogram(
    "llm_classifier_latency_seconds",
    "Latency of classifier calls to Triton",
    ["classifier"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
# VSR exposes this counter without the `_total` suffix; a Gauge keeps the exact name.
CATEGORY_CLASSIFICATIONS = Gauge(
    "llm_category_classifications_count", "Classifications per category", ["category"], registry=REGISTRY
)
CACHE_HITS = Counter("llm_cache_hits", "Semantic cache hits", registry=REGISTRY)
CACHE_MISSES = Counter("llm_cache_misses", "Semantic cache misses", registry=REGISTRY)
CACHE_OPERATION_DURATION = Histogram(
    "llm_cache_operation_duration_seconds",
    "Cache operation latency as seen by the router",
    ["backend", "operation", "status"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
    registry=REGISTRY,
)
CACHE_ENTRIES = Gauge(
    "llm_cache_entries_total",
    "Entries in the semantic cache (polled from the cache service every few seconds)",
    ["backend"],
    registry=REGISTRY,
)
CACHE_OPERATIONS = Counter(
    "llm_cache_operations", "Cache operations by outcome", ["backend", "operation", "status"], registry=REGISTRY
)
PII_VIOLATIONS = Counter("llm_pii_violations", "PII policy violations", ["model", "pii_type"], registry=REGISTRY)
REASONING_DECISIONS = Counter(
    "llm_reasoning_decisions",
    "Reasoning mode decisions",
    ["category", "model", "enabled", "effort"],
    registry=REGISTRY,
)
REASONING_TEMPLATE_USAGE = Counter(
    "llm_reasoning_template_usage",
    "Times a reasoning family's chat-template parameter was set",
    ["family", "param"],
    registry=REGISTRY,
)
REASONING_EFFORT_USAGE = Counter(
    "llm_reasoning_effort_usage", "Times a reasoning effort was set", ["family", "effort"], registry=REGISTRY
)
ROUTING_REASON_CODES = Counter(
    "llm_routing_reason_codes",
    "Routing decisions by how the model was chosen (Routed.reason) and model",
    ["reason_code", "model"],
    registry=REGISTRY,
)
MODEL_COST = Counter("llm_model_cost", "Cost from model_config pricing", ["model", "currency"], registry=REGISTRY)
ROUTING_MODIFICATIONS = Counter(
    "llm_model_routing_modifications",
    "Requests whose model the router changed",
    ["source_model", "target_model"],
    registry=REGISTRY,
)
REQUESTS_BLOCKED = Counter("llm_request_blocked", "Requests blocked by a guard", ["reason"], registry=REGISTRY)
# Ours (no VSR equivalent).
CLASSIFIER_ERRORS = Counter(
    "semantic_router_classifier_errors", "Failed classifier calls", ["reason"], registry=REGISTRY
)
TRUNCATED_TEXTS = Counter(
    "semantic_router_truncated_texts", "Texts longer than the model's max sequence length", registry=REGISTRY
)
SIGNAL_BATCH_SIZE = Histogram(
    "semantic_router_signal_batch_rows",
    "Rows per Triton call (micro-batching effectiveness)",
    buckets=(1, 2, 4, 8, 16, 32, 64),
    registry=REGISTRY,
)
CONFIG_RELOADS = Counter("semantic_router_config_reloads", "Config reload attempts", ["result"], registry=REGISTRY)
PII_MASKED = Counter(
    "semantic_router_pii_masked",
    "PII values replaced by placeholders before the request left (pii_policy.action: mask)",
    ["model", "pii_type"],
    registry=REGISTRY,
)
CONVERSATION_PINS = Counter(
    "semantic_router_conversation_pins",
    "Conversation routing outcomes: created, applied, applied_tool_loop, broken, overridden, unavailable",
    ["outcome"],
    registry=REGISTRY,
)
PIN_STORE_ERRORS = Counter(
    "semantic_router_pin_store_errors", "Failed conversation pin store operations", ["operation"], registry=REGISTRY
)


def model_label(cfg: RouterConfig, name: str) -> str:
    """`name` when the config knows it (a model, a LoRA name, the auto name), else "other": a client may send any
    model name, and every distinct label value is a new time series."""
    if name in cfg.models or name == cfg.default_model or cfg.is_auto_model(name):
        return name
    for category in cfg.categories:
        for score in category.model_scores:
            if name in (score.model, score.lora_name):
                return name
    return "other"


CLASSIFIER_PENDING_ROWS = Gauge(
    "semantic_router_classifier_pending_rows",
    "Texts queued for or waiting on Triton (the classification queue the router bounds)",
    registry=REGISTRY,
)
CLASSIFICATION_SHED = Counter(
    "semantic_router_classification_shed",
    "Requests whose texts the full classification queue refused (their failure policy then applied)",
    registry=REGISTRY,
)
REQUESTS_UNCLASSIFIED = Counter(
    "semantic_router_requests_unclassified",
    "Requests decided without signals, by why (overloaded: shed; unavailable: Triton failed or timed out) and what "
    "the failure policy did (routed: passed unclassified; refused: 503)",
    ["reason", "outcome"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "semantic_router_rate_limited", "Chat requests refused by the per-tenant rate limit (429)", registry=REGISTRY
)
ENDPOINT_EJECTED = Gauge(
    "semantic_router_endpoint_ejected",
    "1 while the router skips a backend endpoint after repeated failures (its passive health breaker is open)",
    ["endpoint"],
    registry=REGISTRY,
)
FAILOVERS = Counter(
    "semantic_router_failovers",
    "Requests answered by a later candidate after the chosen backend failed before its first byte (or was skipped)",
    ["transport"],
    registry=REGISTRY,
)
