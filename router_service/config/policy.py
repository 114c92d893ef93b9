"""Look-ups on a loaded config: the VSR semantics every caller shares (endpoints, reasoning, guards, cache).

`RouterConfig` is the validated file (`schema.RouterConfigSchema`) plus these methods, so the proxy, ExtProc, the
classification API and the decision core all read one answer to "which endpoint", "is the guard on here", "which
cache threshold".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import PrivateAttr, model_validator

from router_service.config.redaction import redact_config
from router_service.config.schema import (
    AUTO_ALIAS,
    Category,
    Endpoint,
    ModelParams,
    PiiPolicy,
    Pricing,
    ReasoningFamily,
    RouterConfigSchema,
)

__all__ = ["RouterConfig"]


class RouterConfig(RouterConfigSchema):
    """The whole configuration file with its look-ups. Built by `loading.parse_config` / `load_config`."""

    _source: Path | None = PrivateAttr(default=None)
    _by_label: dict[str, Category] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _index_categories(self) -> RouterConfig:
        by_label: dict[str, Category] = {}
        for cat in self.categories:
            for label in cat.mmlu_categories:
                by_label.setdefault(label, cat)
        by_label.update({cat.name: cat for cat in self.categories})
        self._by_label = by_label
        return self

    @property
    def source_path(self) -> Path | None:
        """The file this config was loaded from (None when built in memory)."""
        return self._source

    def resolve_path(self, value: str) -> Path:
        """A path from the config: absolute as is, else relative to the config file's folder."""
        path = Path(value)
        if path.is_absolute() or self._source is None:
            return path
        return self._source.parent / path

    def is_auto_model(self, model: str) -> bool:
        return model in (self.auto_model_name, AUTO_ALIAS)

    def category(self, label: str) -> Category | None:
        """The category for a classifier label: by name, else the first whose `mmlu_categories` lists it."""
        return self._by_label.get(label)

    def model_params(self, model: str) -> ModelParams | None:
        return self.models.get(model)

    def best_model_for(self, label: str) -> str | None:
        """The best-scoring model of the category for a classifier label (None: no such category/models)."""
        category = self.category(label)
        ranked = category.ranked_scores() if category is not None else ()
        return ranked[0].model if ranked else None

    def default_endpoint(self) -> str:
        """`host:port` of the default model's best endpoint: where requests the router does not parse go."""
        return self.endpoints_for(self.default_model)[0].host_port

    def endpoints_for(self, model: str) -> tuple[Endpoint, ...]:
        """Endpoints serving `model`, best first (highest weight; ties in file order).

        A model's `preferred_endpoints` when it has some. Otherwise (a model without preferences, or a
        model the config does not know) the default model's endpoints, as VSR sends unknown models to the
        default endpoint; if the default model has none either, every endpoint.
        """
        by_name = {ep.name: ep for ep in self.vllm_endpoints}
        for name in (model, self.default_model):
            params = self.models.get(name)
            if params is not None and params.preferred_endpoints:
                chosen = [by_name[n] for n in params.preferred_endpoints if n in by_name]
                return tuple(sorted(chosen, key=lambda ep: -ep.weight))
        return tuple(sorted(self.vllm_endpoints, key=lambda ep: -ep.weight))

    def reasoning_family_for(self, model: str) -> ReasoningFamily | None:
        params = self.models.get(model)
        if params is None or params.reasoning_family is None:
            return None
        return self.reasoning_families.get(params.reasoning_family)

    def pii_policy_for(self, model: str) -> PiiPolicy:
        params = self.models.get(model)
        return params.pii_policy if params is not None else PiiPolicy()

    def pricing_for(self, model: str) -> Pricing | None:
        params = self.models.get(model)
        return params.pricing if params is not None else None

    def all_models(self) -> tuple[str, ...]:
        """Every model the config names: model_config keys, then model_scores, then default_model."""
        names = [
            *self.models,
            *(s.model for c in self.categories for s in c.model_scores),
            self.default_model,
        ]
        return tuple(dict.fromkeys(names))

    def jailbreak_enabled(self, category: Category | None) -> bool:
        if category is not None and category.jailbreak_enabled is not None:
            return category.jailbreak_enabled
        return self.prompt_guard.enabled

    def jailbreak_threshold(self, category: Category | None, model_threshold: float = 0.7) -> float:
        """The category's override, else `prompt_guard.threshold`, else the model build's own operating point."""
        if category is not None and category.jailbreak_threshold is not None:
            return category.jailbreak_threshold
        if self.prompt_guard.threshold is not None:
            return self.prompt_guard.threshold
        return model_threshold

    def pii_enabled(self, category: Category | None) -> bool:
        """Per category when set, else on when `classifier.pii_model` is configured (VSR semantics)."""
        if category is not None and category.pii_enabled is not None:
            return category.pii_enabled
        return "pii_model" in self.classifier.model_fields_set

    def pii_can_matter(self, model: str, is_auto: bool) -> bool:
        """Whether detected PII can change where a request for `model` goes: PII detection is on where it is
        decided (the category, or no category) and some model it may reach restricts a type. When it cannot
        (e.g. every model allows all PII, as in VSR's own config.yaml), the router asks Triton for no PII and the
        PII branch of the graph does not run. A model with `pii_policy.action: mask` always needs detection, whatever
        the category's `pii_enabled` says: masking is the model's promise."""
        if not is_auto:
            policy = self.pii_policy_for(model)
            return policy.masks or (self.pii_enabled(None) and not policy.allows_all)
        if any(self.pii_policy_for(m).masks for m in self.all_models()):
            return True  # a masking model must never receive unchecked text
        enabled = self.pii_enabled(None) or any(self.pii_enabled(c) for c in self.categories)
        return enabled and any(not self.pii_policy_for(m).allows_all for m in self.all_models())

    def pii_threshold(self, category: Category | None) -> float:
        if category is not None and category.pii_threshold is not None:
            return category.pii_threshold
        return self.classifier.pii_model.threshold

    def cache_enabled(self, category: Category | None) -> bool:
        if category is not None and category.semantic_cache_enabled is not None:
            return category.semantic_cache_enabled
        return self.semantic_cache.enabled

    def cache_threshold(self, category: Category | None) -> float:
        """Cosine similarity for a hit: category, else semantic_cache, else bert_model, else 0.8."""
        if category is not None and category.semantic_cache_similarity_threshold is not None:
            return category.semantic_cache_similarity_threshold
        return _first_set(self.semantic_cache.similarity_threshold, self._bert_threshold(), 0.8)

    @property
    def tools_threshold(self) -> float:
        """Cosine similarity a tool needs: tools.similarity_threshold, else bert_model's, else 0.2."""
        return _first_set(self.tools.similarity_threshold, self._bert_threshold(), 0.2)

    def _bert_threshold(self) -> float | None:
        return self.bert_model.threshold if self.bert_model is not None else None

    def redacted(self) -> dict[str, Any]:
        """The config as JSON-able data for GET /config, with secrets replaced by "***" (`redaction`)."""
        return redact_config(self)


def _first_set(*values: float | None) -> float:
    for value in values:
        if value is not None:
            return value
    raise ValueError("no value")
