"""The router configuration, a package along its seams.

- `schema`: VSR classic's YAML schema as pydantic models, plus our `triton_router:` section;
- `policy`: `RouterConfig`, the schema plus the look-ups that encode VSR semantics;
- `loading`: YAML → `RouterConfig` or `ConfigError`, and the "ignored keys" log lines;
- `redaction`: what GET /config shows;
- `store`: the live config, hot-reloaded from its file (import it from `router_service.config.store`).
"""

from router_service.config.loading import format_loc, load_config, log_ignored_keys, parse_config
from router_service.config.policy import RouterConfig
from router_service.config.redaction import redact_config
from router_service.config.schema import (
    AUTO_ALIAS,
    DEFAULT_MAX_BATCH_SIZE,
    MAX_BATCH_SIZE_LIMIT,
    ApiConfig,
    BatchClassificationConfig,
    BertModelConfig,
    Category,
    CategoryModelConfig,
    ClassifierConfig,
    ConversationConfig,
    EmbeddingModelsConfig,
    Endpoint,
    FailurePolicy,
    KeywordRule,
    LoraAdapter,
    ModelParams,
    ModelScore,
    ObservabilityConfig,
    PiiModelConfig,
    PiiPolicy,
    Pricing,
    PromptGuardConfig,
    RateLimitConfig,
    ReasoningFamily,
    RouterConfigSchema,
    SemanticCacheConfig,
    ToolsConfig,
    TritonRouterConfig,
)

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
    "RouterConfig",
    "RouterConfigSchema",
    "SemanticCacheConfig",
    "ToolsConfig",
    "TritonRouterConfig",
    "format_loc",
    "load_config",
    "log_ignored_keys",
    "parse_config",
    "redact_config",
]
