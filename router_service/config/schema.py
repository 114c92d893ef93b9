"""The config file's schema: VSR classic's YAML schema as pydantic models, plus our `triton_router:` section.

`tests/fixtures/vsr-classic/config.yaml` and `config.e2e.yaml` load unchanged. Unknown keys are rejected at
every level we interpret (a typo such as `jailbreak_treshold` silently disabling a guard is worse than a loud
error); only VSR's free-form sections (`router`, `api`, `observability`, cache backend blocks) take anything.

Keys that name VSR's own model files (`bert_model.model_id`, `classifier.*.model_id`, `*_mapping_path`,
`use_modernbert`, `use_cpu`, ...) are accepted and ignored: our models come from the Triton model repository.
VSR runtime knobs with no equivalent here (`NOT_APPLIED_KEYS`: `semantic_cache.redis`,
`vllm_endpoints[].health_check_path`, `model_config.*.loras`, ...) are accepted too. Each class names its own in
`VSR_MODEL_KEYS` / `NOT_APPLIED_KEYS` (a free-form section: `EXTRA_KIND`, for every key beyond its fields);
`RouterConfigSchema.vsr_model_keys()` / `.not_applied_keys()` list those a
file sets, and `loading.log_ignored_keys` logs them, so an operator sees they have no effect. `docs/config.md`
has the whole table; `tests/unit/test_config_keys.py` holds every field to "read somewhere, or logged".

Thresholds are probabilities or cosine similarities in [0, 1]; the semantic-cache and tool thresholds are
cosine SIMILARITIES, so higher is stricter.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

__all__ = [
    "AUTO_ALIAS",
    "DEFAULT_MAX_BATCH_SIZE",
    "MAX_BATCH_SIZE_LIMIT",
    "ApiConfig",
    "BatchClassificationConfig",
    "BertModelConfig",
    "Category",
    "CategoryModelConfig",
    "ClassifierConfig",
    "ConversationConfig",
    "EmbeddingModelsConfig",
    "Endpoint",
    "FailurePolicy",
    "KeywordRule",
    "LoraAdapter",
    "ModelParams",
    "ModelScore",
    "ObservabilityConfig",
    "PiiModelConfig",
    "PiiPolicy",
    "Pricing",
    "PromptGuardConfig",
    "RateLimitConfig",
    "ReasoningFamily",
    "RouterConfigSchema",
    "SemanticCacheConfig",
    "ToolsConfig",
    "TritonRouterConfig",
    "key_step",
]

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Port = Annotated[int, Field(ge=1, le=65535)]
NonEmptyStr = Annotated[str, Field(min_length=1)]
Effort = Literal["minimal", "low", "medium", "high"]
Policy = Literal["open", "closed"]

AUTO_ALIAS = "auto"
"""Always triggers automatic routing, whatever `auto_model_name` says (VSR keeps it for compatibility)."""


class _Section(BaseModel):
    """A section whose keys we interpret: unknown keys are errors, values are immutable after load."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    VSR_MODEL_KEYS: ClassVar[frozenset[str]] = frozenset()
    """Keys naming VSR's own model files: accepted, ignored, logged once."""
    NOT_APPLIED_KEYS: ClassVar[frozenset[str]] = frozenset()
    """VSR runtime knobs with no equivalent here: accepted, ignored, logged once."""
    EXTRA_KIND: ClassVar[Literal["model", "not_applied"] | None] = None
    """Free-form sections: keys beyond the declared fields are accepted, ignored and logged as this kind."""


class _FreeForm(_Section):
    """A VSR section with free-form content (tuning knobs of VSR internals): anything is accepted; keys beyond the
    declared fields have no effect and are logged as such."""

    model_config = ConfigDict(extra="allow", frozen=True, protected_namespaces=())
    EXTRA_KIND: ClassVar[Literal["model", "not_applied"] | None] = "not_applied"


_MODEL_FILE_KEYS = frozenset({"model_id", "use_cpu", "use_modernbert"})


class BertModelConfig(_Section):
    """VSR's similarity model. Only `threshold` matters: the fallback for cache and tool similarity."""

    VSR_MODEL_KEYS = _MODEL_FILE_KEYS
    model_id: str | None = None
    threshold: Probability | None = None
    use_cpu: bool | None = None


class SemanticCacheConfig(_Section):
    """Global semantic-cache settings. `similarity_threshold` is a cosine similarity: higher is stricter."""

    NOT_APPLIED_KEYS = frozenset(
        {
            "backend_type",
            "backend_config_path",
            "eviction_policy",
            "use_hnsw",
            "hnsw_m",
            "hnsw_ef_construction",
            "max_memory_entries",
            "embedding_model",
            "milvus",
            "redis",
        }
    )
    enabled: bool = False
    similarity_threshold: Probability | None = None
    ttl_seconds: Annotated[int, Field(ge=0)] = 3600
    max_entries: Annotated[int, Field(ge=1)] = 10_000
    backend_type: str | None = None
    backend_config_path: str | None = None
    eviction_policy: Literal["fifo", "lru", "lfu"] | None = None
    use_hnsw: bool | None = None
    hnsw_m: Annotated[int, Field(ge=1)] | None = None
    hnsw_ef_construction: Annotated[int, Field(ge=1)] | None = None
    max_memory_entries: Annotated[int, Field(ge=1)] | None = None
    embedding_model: str | None = None
    redis: dict[str, Any] | None = None
    milvus: dict[str, Any] | None = None


class ToolsConfig(_Section):
    """Automatic tool selection. `similarity_threshold` is a cosine similarity (default: bert_model's)."""

    enabled: bool = False
    top_k: Annotated[int, Field(ge=1, le=64)] = 3
    similarity_threshold: Probability | None = None
    tools_db_path: str | None = None
    fallback_to_empty: bool = True


class PromptGuardConfig(_Section):
    """Jailbreak detection. Absent or `enabled: false` skips the check (per-category overrides apply)."""

    VSR_MODEL_KEYS = _MODEL_FILE_KEYS | {"jailbreak_mapping_path"}
    enabled: bool = False
    threshold: Probability | None = None
    """Unset: the operating point the signals model's build chose on validation (its manifest)."""
    model_id: str | None = None
    use_cpu: bool | None = None
    use_modernbert: bool | None = None
    jailbreak_mapping_path: str | None = None


class Endpoint(_Section):
    """An upstream OpenAI-compatible server. `address` is an IP or host name only: no scheme, path or port.

    `health_check_path` is accepted and not used: endpoint health here is what each request sees (the direct proxy
    fails over to the next candidate; Envoy reports upstream errors), not a separate probe.
    """

    NOT_APPLIED_KEYS = frozenset({"health_check_path"})

    name: NonEmptyStr
    address: NonEmptyStr
    port: Port
    weight: Annotated[int, Field(ge=0)] = 1
    health_check_path: str | None = None

    @field_validator("address")
    @classmethod
    def _bare_address(cls, value: str) -> str:
        value = value.strip()
        if "://" in value or "/" in value or any(c.isspace() for c in value):
            raise ValueError("must be a bare IP address or host name (no scheme, path or spaces)")
        if ":" in value:
            try:
                ipaddress.IPv6Address(value.strip("[]"))
            except ValueError:
                raise ValueError("must not contain a port; put it in the 'port' key") from None
            return value.strip("[]")
        return value

    @property
    def host_port(self) -> str:
        """`address:port` as Envoy's ORIGINAL_DST expects it (IPv6 in brackets)."""
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


class PiiPolicy(_Section):
    """Which PII types a model may receive.

    `allow_by_default: true` allows every type; `false` allows only `pii_types_allowed`. When
    `allow_by_default` is omitted it is true unless a `pii_types_allowed` list is given (a list of
    allowed types only means something as a restriction; with `action: mask` it is false: mask every type not
    listed). A model without `pii_policy` allows all PII, which is what an operator who never wrote a policy
    expects (VSR's Go zero value would deny all).
    """

    allow_by_default: bool | None = None
    pii_types_allowed: tuple[str, ...] = ()
    action: Literal["deny", "mask"] = "deny"
    """Ours. What happens to a type the policy does not allow. deny (default, VSR's behaviour): the model is not
    eligible (an auto request falls to the next model, else it is refused). mask: the model stays eligible and
    receives each such span as a typed, numbered placeholder (`<EMAIL_ADDRESS_1>`); it fails closed (with PII
    detection unavailable the model receives nothing)."""
    restore: bool = True
    """Ours, with `action: mask`: put the original values back in the response (streamed or not)."""

    @property
    def masks(self) -> bool:
        return self.action == "mask"

    @property
    def allows_all(self) -> bool:
        if self.allow_by_default is None:  # `action: mask` alone masks every type
            return not self.pii_types_allowed and not self.masks
        return self.allow_by_default

    def allows(self, pii_type: str) -> bool:
        return self.allows_all or pii_type in self.pii_types_allowed


class Pricing(_Section):
    """Price per million tokens, for `llm_model_cost_total`."""

    currency: NonEmptyStr = "USD"
    prompt_per_1m: Annotated[float, Field(ge=0)] = 0.0
    completion_per_1m: Annotated[float, Field(ge=0)] = 0.0


class LoraAdapter(_Section):
    name: NonEmptyStr
    description: str | None = None


class ModelParams(_Section):
    """`model_config.<model>`. `use_reasoning` here is legacy VSR: reasoning is set per model_scores entry.
    `loras` (VSR's adapter catalogue) is not used: `model_scores[].lora_name` names the adapter sent upstream."""

    NOT_APPLIED_KEYS = frozenset({"use_reasoning", "param_size", "loras"})
    reasoning_family: str | None = None
    preferred_endpoints: tuple[NonEmptyStr, ...] = ()
    pii_policy: PiiPolicy = PiiPolicy()
    pricing: Pricing | None = None
    loras: tuple[LoraAdapter, ...] = ()
    use_reasoning: bool | None = None
    param_size: str | None = None


class ReasoningFamily(_Section):
    """How a model family is told to reason: `chat_template_kwargs.<parameter>`, or a `<parameter>` effort."""

    type: Literal["chat_template_kwargs", "reasoning_effort"]
    parameter: NonEmptyStr


class CategoryModelConfig(_Section):
    """Intent classifier: below `threshold` confidence the request goes to `default_model`."""

    VSR_MODEL_KEYS = _MODEL_FILE_KEYS | {"category_mapping_path"}
    threshold: Probability = 0.6
    model_id: str | None = None
    use_cpu: bool | None = None
    use_modernbert: bool | None = None
    category_mapping_path: str | None = None


class PiiModelConfig(_Section):
    """PII detector: writing this section enables PII checks; entities below `threshold` are ignored."""

    VSR_MODEL_KEYS = _MODEL_FILE_KEYS | {"pii_mapping_path"}
    threshold: Probability = 0.7
    model_id: str | None = None
    use_cpu: bool | None = None
    use_modernbert: bool | None = None
    pii_mapping_path: str | None = None


class ClassifierConfig(_Section):
    NOT_APPLIED_KEYS = frozenset({"mcp_category_model"})
    category_model: CategoryModelConfig = CategoryModelConfig()
    pii_model: PiiModelConfig = PiiModelConfig()
    """Always present so callers can read the threshold; `RouterConfig.pii_enabled` says if it was set."""
    mcp_category_model: dict[str, Any] | None = None


class ModelScore(_Section):
    """One candidate model of a category. `lora_name`, when set, is the model name sent upstream;
    `reasoning_description` is informational."""

    NOT_APPLIED_KEYS = frozenset({"reasoning_description"})

    model: NonEmptyStr
    score: Probability
    use_reasoning: bool | None = None
    reasoning_effort: Effort | None = None
    reasoning_description: str | None = None
    lora_name: str | None = None


class Category(_Section):
    """A routing category: its candidate models and per-category policy overrides (None = inherit global)."""

    NOT_APPLIED_KEYS = frozenset({"description"})
    """`description` is informational (VSR feeds it to its MCP classifier, which has no equivalent here)."""

    name: NonEmptyStr
    description: str | None = None
    mmlu_categories: tuple[str, ...] = ()
    system_prompt: str | None = None
    system_prompt_enabled: bool | None = None
    system_prompt_mode: Literal["replace", "insert"] = "replace"
    semantic_cache_enabled: bool | None = None
    semantic_cache_similarity_threshold: Probability | None = None
    jailbreak_enabled: bool | None = None
    jailbreak_threshold: Probability | None = None
    pii_enabled: bool | None = None
    pii_threshold: Probability | None = None
    model_scores: tuple[ModelScore, ...] = ()

    @property
    def injects_system_prompt(self) -> bool:
        """VSR: enabled defaults to true when a prompt is set."""
        if not self.system_prompt:
            return False
        return True if self.system_prompt_enabled is None else self.system_prompt_enabled

    def ranked_scores(self) -> tuple[ModelScore, ...]:
        """Entries by score, highest first; ties keep file order; a model listed twice keeps its best."""
        seen: set[str] = set()
        ranked: list[ModelScore] = []
        for entry in sorted(self.model_scores, key=lambda e: -e.score):
            if entry.model not in seen:
                seen.add(entry.model)
                ranked.append(entry)
        return tuple(ranked)


class KeywordRule(_Section):
    """VSR classic keyword rule, checked before the classifier; a match sets the category with confidence 1.0.

    `operator`: OR = any keyword present, AND = all present, NOR = none present. Keywords match as whole
    words/phrases (not inside longer words), case-insensitively unless `case_sensitive`. Rules are tried in
    file order; the first match wins. `name` is accepted as an alias of `category` (later VSR spelling).
    """

    category: NonEmptyStr = Field(validation_alias=AliasChoices("category", "name"))
    operator: Literal["AND", "OR", "NOR"] = "OR"
    keywords: tuple[NonEmptyStr, ...] = Field(min_length=1)
    case_sensitive: bool = False
    _patterns: tuple[re.Pattern[str], ...] = PrivateAttr(default=())

    @field_validator("operator", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def model_post_init(self, context: Any, /) -> None:
        flags = 0 if self.case_sensitive else re.IGNORECASE
        self._patterns = tuple(re.compile(rf"(?<!\w){re.escape(k)}(?!\w)", flags) for k in self.keywords)

    def matches(self, text: str) -> bool:
        hits = (p.search(text) is not None for p in self._patterns)
        if self.operator == "AND":
            return all(hits)
        if self.operator == "OR":
            return any(hits)
        return not any(hits)


DEFAULT_MAX_BATCH_SIZE = 100
"""VSR's bound on `/api/v1/classify/batch` when `api.batch_classification.max_batch_size` is absent or <= 0."""
MAX_BATCH_SIZE_LIMIT = 10_000


class BatchClassificationConfig(_FreeForm):
    """`max_batch_size` bounds the texts of one batch request (0 or absent: 100, as VSR); the rest (VSR's
    concurrency and metrics knobs) is accepted and has no effect."""

    max_batch_size: Annotated[int, Field(ge=0, le=MAX_BATCH_SIZE_LIMIT)] = DEFAULT_MAX_BATCH_SIZE

    @property
    def effective_max_batch_size(self) -> int:
        return self.max_batch_size if self.max_batch_size > 0 else DEFAULT_MAX_BATCH_SIZE


class ApiConfig(_FreeForm):
    """VSR's classification-API knobs; `batch_classification.max_batch_size` bounds the batch endpoint."""

    batch_classification: BatchClassificationConfig = BatchClassificationConfig()


class EmbeddingModelsConfig(_FreeForm):
    """VSR's long-context embedding models: all model paths, all ignored."""

    VSR_MODEL_KEYS = frozenset({"qwen3_model_path", "gemma_model_path", "use_cpu", "hnsw_config"})
    EXTRA_KIND = "model"
    qwen3_model_path: str | None = None
    gemma_model_path: str | None = None
    use_cpu: bool | None = None
    hnsw_config: dict[str, Any] | None = None


class ObservabilityConfig(_FreeForm):
    """`tracing` (free-form: exporter, sampling, resource) is read by the service's tracing setup; other keys
    (VSR's metrics knobs, ...) have no effect."""

    tracing: dict[str, Any] | None = None


class FailurePolicy(_Section):
    """What happens to a request when Triton (all signals at once) is unavailable.

    - `classification: open` (default): route to `default_model`. Routing is a quality optimisation; refusing
      traffic because the optimiser is down would turn a degraded router into an outage.
    - `jailbreak: closed` (default): block with 503. An operator who enabled a guard expects it to hold;
      failing open would turn "make the classifier time out" (e.g. with huge prompts) into a bypass, and a
      silent one. This is Envoy's own default for external authorisation (`failure_mode_allow: false`). It
      only bites when the guard is enabled for the request (prompt_guard or the category says so).
    - `pii: closed` (default): with PII unknown, only candidates whose policy allows every PII type stay
      eligible; when none does, block with 503. Models without a restrictive `pii_policy` keep serving.

    VSR itself logs the classifier error and continues; set `open` to get that behaviour.
    """

    classification: Policy = "open"
    jailbreak: Policy = "closed"
    pii: Policy = "closed"


class RateLimitConfig(_Section):
    """Per-tenant request rate limit of the chat path (both transports), a token bucket per tenant.

    The tenant is the value of `tenant_header` (default: `triton_router.cache_tenant_header`); requests without
    it share one bucket. Over the limit: HTTP 429, OpenAI error `rate_limit_exceeded`, `Retry-After` in seconds.
    The header is trusted as sent: put the router behind a gateway that sets it from authentication.
    Each router replica counts on its own (N replicas admit up to N times the rate)."""

    enabled: bool = False
    requests_per_second: Annotated[float, Field(gt=0)] = 10.0
    burst: Annotated[int, Field(ge=1)] = 20
    """Requests a quiet tenant may send at once."""
    tenant_header: NonEmptyStr | None = None
    max_tenants: Annotated[int, Field(ge=1)] = 10_000
    """Buckets kept in memory (least recently seen dropped first; a dropped tenant starts with a full bucket)."""

    @field_validator("tenant_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", value):
            raise ValueError("must be an HTTP header name")
        return value.lower() if value is not None else None


class ConversationConfig(_Section):
    """Conversation-aware routing (ours): a conversation's model is pinned in Redis and kept across turns.

    The key is the `header` a client sends (scoped by the tenant header), else a hash of the conversation's
    opening (its system messages and first user message, the tenant header and the `authorization` header).
    A later turn leaves the pinned model only when its category changes with confidence above
    `switch_confidence` (1.0: never), and never while a tool call is pending (assistant `tool_calls` / `tool` messages
    after the last user message)."""

    enabled: bool = False
    header: NonEmptyStr = "x-conversation-id"
    ttl_seconds: Annotated[int, Field(ge=1, le=30 * 24 * 3600)] = 3600
    """How long a pin lives after its conversation's last turn (refreshed on every turn)."""
    switch_confidence: Probability = 0.85
    """The hysteresis: a new category moves a conversation off its model only with a confidence above this (a
    keyword rule's is 1.0); 1.0 keeps every conversation on its first model until the pin expires."""

    @field_validator("header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", value):
            raise ValueError("must be an HTTP header name")
        return value.lower()


class TritonRouterConfig(_Section):
    """Our own settings (VSR's `router:` section means something else and is kept as-is)."""

    block_response: Literal["openai_error", "content_filter"] = "content_filter"
    """How a refused request is answered. content_filter (default, VSR's form, so a VSR config loaded unchanged
    behaves as it did there): HTTP 200 `chat.completion` with finish_reason "content_filter" (one SSE chunk and
    `[DONE]` when streaming). openai_error: HTTP 403 with an OpenAI error body."""
    failure_policy: FailurePolicy = FailurePolicy()
    log_prompts: bool = False
    """Prompts are user data: never logged unless the operator opts in."""
    cache_tenant_header: NonEmptyStr = "x-user-id"
    """Request header whose value scopes semantic-cache entries to one tenant/user. Trusted as sent: only behind a
    gateway that sets it (and strips a client's own) is it an isolation boundary."""
    admin_token: str | None = None
    """Token for GET /config and POST /config/reload (`Authorization: Bearer`). The SEMANTIC_ROUTER_ADMIN_TOKEN
    variable wins over it; with neither, the run directory's `admin_token` file (created when missing)."""
    rate_limit: RateLimitConfig = RateLimitConfig()
    conversation: ConversationConfig = ConversationConfig()

    @field_validator("cache_tenant_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", value):
            raise ValueError("must be an HTTP header name")
        return value.lower()


class RouterConfigSchema(_Section):
    """The whole configuration file as validated. `policy.RouterConfig` adds the look-ups that encode VSR semantics."""

    NOT_APPLIED_KEYS = frozenset({"router", "embedding_rules", "clear_route_cache"})

    bert_model: BertModelConfig | None = None
    semantic_cache: SemanticCacheConfig = SemanticCacheConfig()
    tools: ToolsConfig = ToolsConfig()
    prompt_guard: PromptGuardConfig = PromptGuardConfig()
    vllm_endpoints: tuple[Endpoint, ...] = Field(min_length=1)
    models: dict[str, ModelParams] = Field(default_factory=dict, alias="model_config")
    classifier: ClassifierConfig = ClassifierConfig()
    categories: tuple[Category, ...] = ()
    router: dict[str, Any] | None = None
    """VSR's dual-path (LoRA vs traditional) selection knobs: accepted, no equivalent here."""
    default_model: NonEmptyStr
    reasoning_families: dict[str, ReasoningFamily] = Field(default_factory=dict)
    default_reasoning_effort: Effort = "medium"
    api: ApiConfig = ApiConfig()
    embedding_models: EmbeddingModelsConfig | None = None
    observability: ObservabilityConfig = ObservabilityConfig()
    auto_model_name: NonEmptyStr = "MoM"
    include_config_models_in_list: bool | None = None
    """None (default here) or true: GET /v1/models lists configured models too; false: only the auto model."""
    clear_route_cache: bool = False
    keyword_rules: tuple[KeywordRule, ...] = ()
    embedding_rules: tuple[dict[str, Any], ...] = ()
    triton_router: TritonRouterConfig = TritonRouterConfig()

    @model_validator(mode="after")
    def _cross_check(self) -> RouterConfigSchema:
        problems = [*_endpoint_problems(self), *_model_problems(self), *_category_problems(self)]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # --- reporting ------------------------------------------------------------------------------------

    def vsr_model_keys(self) -> tuple[str, ...]:
        """Paths of the keys present that name VSR's model files (ignored: ours live in Triton)."""
        return tuple(p for p, kind in _special_keys(self, "") if kind == "model")

    def not_applied_keys(self) -> tuple[str, ...]:
        """Paths of VSR runtime knobs present that have no effect here."""
        return tuple(p for p, kind in _special_keys(self, "") if kind == "not_applied")


def _endpoint_problems(cfg: RouterConfigSchema) -> Iterator[str]:
    seen: set[str] = set()
    for i, ep in enumerate(cfg.vllm_endpoints):
        if ep.name in seen:
            yield f"vllm_endpoints[{i}].name: duplicate endpoint name {ep.name!r}"
        seen.add(ep.name)


def _model_problems(cfg: RouterConfigSchema) -> Iterator[str]:
    known_endpoints = [ep.name for ep in cfg.vllm_endpoints]
    for model, params in cfg.models.items():
        where = f"model_config{key_step(model)}"
        for j, name in enumerate(params.preferred_endpoints):
            if name not in known_endpoints:
                yield f"{where}.preferred_endpoints[{j}]: unknown endpoint {name!r}{_known(known_endpoints)}"
        family = params.reasoning_family
        if family is not None and family not in cfg.reasoning_families:
            known = _known(cfg.reasoning_families)
            yield f"{where}.reasoning_family: unknown reasoning family {family!r}{known}"
    scored = {s.model for c in cfg.categories for s in c.model_scores}
    if cfg.default_model not in cfg.models and cfg.default_model not in scored:
        yield f"default_model: {cfg.default_model!r} is in neither model_config nor any model_scores"


def _category_problems(cfg: RouterConfigSchema) -> Iterator[str]:
    names: set[str] = set()
    for i, cat in enumerate(cfg.categories):
        if cat.name in names:
            yield f"categories[{i}].name: duplicate category {cat.name!r}"
        names.add(cat.name)
        if cat.system_prompt_enabled and not cat.system_prompt:
            yield f"categories[{i}].system_prompt_enabled: true but the category has no system_prompt"
    for i, rule in enumerate(cfg.keyword_rules):
        if rule.category not in names:
            yield f"keyword_rules[{i}].category: unknown category {rule.category!r}{_known(sorted(names))}"


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_step(name: str | int) -> str:
    """One step of a key path: `.name`, `[3]`, or `["name with/odd chars"]`."""
    if isinstance(name, int):
        return f"[{name}]"
    return f".{name}" if _PLAIN_KEY.fullmatch(name) else f"[{json.dumps(name)}]"


def _known(names: Any) -> str:
    listed = ", ".join(sorted(str(n) for n in names))
    return f" (known: {listed})" if listed else " (none defined)"


def _special_keys(node: BaseModel, path: str) -> Iterator[tuple[str, str]]:
    """(path, kind) of every ignored key the file actually set, depth first."""
    cls = type(node)
    model_keys: frozenset[str] = getattr(cls, "VSR_MODEL_KEYS", frozenset())
    not_applied: frozenset[str] = getattr(cls, "NOT_APPLIED_KEYS", frozenset())
    for name in sorted(node.model_fields_set):
        field = cls.model_fields.get(name)
        if field is None:
            continue
        key = field.alias or name
        here = f"{path}{key_step(key)}".lstrip(".")
        if name in model_keys:
            yield here, "model"
        elif name in not_applied:
            yield here, "not_applied"
        else:
            yield from _special_keys_in(getattr(node, name), here)
    extra_kind: str | None = getattr(cls, "EXTRA_KIND", None)
    if extra_kind is not None:
        for key in sorted(node.model_extra or {}):
            yield f"{path}{key_step(key)}".lstrip("."), extra_kind


def _special_keys_in(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, BaseModel):
        yield from _special_keys(value, path)
    elif isinstance(value, tuple):
        for i, item in enumerate(value):
            yield from _special_keys_in(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, item in value.items():
            if isinstance(item, BaseModel):
                yield from _special_keys(item, f"{path}{key_step(str(k))}")
