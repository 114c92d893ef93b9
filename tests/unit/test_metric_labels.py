"""Model labels are bounded by the config: a client's arbitrary model name must not become a new time series."""

from __future__ import annotations

import pytest

from local_stack.paths import DEFAULT_CONFIG
from router_service.config import load_config
from router_service.metrics import model_label


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("qwen3-32b", "qwen3-32b"),  # model_config
        ("qwen3-1.7b", "qwen3-1.7b"),  # default_model
        ("MoM", "MoM"),  # auto name
        ("auto", "auto"),
        ("gpt-4-turbo-2024-04-09", "other"),
        ("x" * 10_000, "other"),
        ("模型", "other"),
    ],
)
def test_model_label(name: str, label: str) -> None:
    assert model_label(load_config(DEFAULT_CONFIG), name) == label


def test_lora_names_are_known_labels() -> None:
    cfg = load_config(DEFAULT_CONFIG)
    math = cfg.categories[0]
    first = math.model_scores[0].model_copy(update={"lora_name": "math-lora"})
    math = math.model_copy(update={"model_scores": [first, *math.model_scores[1:]]})
    cfg = cfg.model_copy(update={"categories": [math, *cfg.categories[1:]]})
    assert model_label(cfg, "math-lora") == "math-lora"
