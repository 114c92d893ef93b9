"""The stack's Grafana dashboard, deploy/grafana/dashboards/semantic-router.json (written by deploy/render.py).

Queries use the job names of deploy/prometheus.yml and Grafana's `$__rate_interval`. tests/integration/
test_observability.py runs every query against a real Prometheus scraping the live test stack, and checks that the
panels marked `key` return data after traffic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "semantic-router.json"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
R = "$__rate_interval"


def quantiles(metric: str, by: str = "", q: tuple[float, ...] = (0.5, 0.99)) -> list[tuple[str, str]]:
    group = f"le{', ' + by if by else ''}"
    suffix = f" {{{{{by}}}}}" if by else ""
    return [
        (f"histogram_quantile({x}, sum by ({group}) (rate({metric}_bucket[{R}])))", f"p{round(x * 100)}{suffix}")
        for x in q
    ]


@dataclass(frozen=True)
class Panel:
    title: str
    targets: list[tuple[str, str]]  # (PromQL, legend)
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"
    key: bool = False  # must return data once the stack has served traffic (checked by the observability test)
    width: int = 12
    options: dict[str, Any] = field(default_factory=dict)


ROWS: list[tuple[str, list[Panel]]] = [
    (
        "Traffic",
        [
            Panel(
                "Requests by model",
                [(f"sum by (model) (rate(llm_model_requests_total[{R}]))", "{{model}}")],
                "reqps",
                "Requests the router routed, by the model it chose",
                key=True,
            ),
            Panel(
                "Requests by category",
                [(f"sum by (category) (rate(llm_category_classifications_count[{R}]))", "{{category}}")],
                "reqps",
                "Auto-model requests by the category the classifier chose",
                key=True,
            ),
            Panel(
                "Completion latency by model",
                quantiles("llm_model_completion_latency_seconds", "model"),
                "s",
                "Upstream time, request sent to last byte",
                key=True,
            ),
            Panel(
                "Time to first token by model",
                quantiles("llm_model_ttft_seconds", "model"),
                "s",
                "Streamed responses",
            ),
            Panel(
                "Errors by reason",
                [(f"sum by (reason) (rate(llm_request_errors_total[{R}]))", "{{reason}}")],
                "reqps",
                "llm_request_errors_total: upstream errors, interrupted streams, guard refusals",
            ),
            Panel(
                "Routing reasons",
                [(f"sum by (reason_code) (rate(llm_routing_reason_codes_total[{R}]))", "{{reason_code}}")],
                "reqps",
                "How the model was chosen; classifier_unavailable = classification failing open",
                key=True,
            ),
        ],
    ),
    (
        "Classifier (Triton)",
        [
            Panel(
                "Router decision time",
                quantiles("llm_model_routing_latency_seconds"),
                "s",
                "Signals, cache lookup and decision, per request",
                key=True,
            ),
            Panel(
                "Classifier call latency",
                quantiles("llm_classifier_latency_seconds", "classifier"),
                "s",
                "One batched Triton call for all signals",
                key=True,
            ),
            Panel(
                "Triton queue time per request",
                [
                    (
                        f"sum by (model) (rate(nv_inference_queue_duration_us[{R}])) / 1e6"
                        f" / clamp_min(sum by (model) (rate(nv_inference_request_success[{R}])), 1e-9)",
                        "{{model}}",
                    )
                ],
                "s",
                "Time requests wait for a batch slot in Triton",
                key=True,
            ),
            Panel(
                "Triton batch size",
                [
                    (
                        f"sum by (model) (rate(nv_inference_count[{R}]))"
                        f" / clamp_min(sum by (model) (rate(nv_inference_exec_count[{R}])), 1e-9)",
                        "rows per execution {{model}}",
                    ),
                    (
                        f"sum(rate(semantic_router_signal_batch_rows_sum[{R}]))"
                        f" / clamp_min(sum(rate(semantic_router_signal_batch_rows_count[{R}])), 1e-9)",
                        "rows per router call",
                    ),
                ],
                "short",
                "Dynamic batching at work: rows per model execution (Triton) and per router call",
                key=True,
            ),
            Panel(
                "Triton compute time per request",
                [
                    (
                        f"sum by (model) (rate(nv_inference_compute_infer_duration_us[{R}])) / 1e6"
                        f" / clamp_min(sum by (model) (rate(nv_inference_request_success[{R}])), 1e-9)",
                        "{{model}}",
                    )
                ],
                "s",
            ),
            Panel(
                "Classifier errors",
                [(f"sum by (reason) (rate(semantic_router_classifier_errors_total[{R}]))", "{{reason}}")],
                "ops",
                "Failed Triton calls (the failure policy then applies)",
            ),
        ],
    ),
    (
        "Semantic cache",
        [
            Panel(
                "Cache hit ratio",
                [
                    (
                        f'sum(rate(llm_cache_hits_total{{job="semantic-router"}}[{R}]))'
                        f' / clamp_min(sum(rate(llm_cache_hits_total{{job="semantic-router"}}[{R}]))'
                        f' + sum(rate(llm_cache_misses_total{{job="semantic-router"}}[{R}])), 1e-9)',
                        "hit ratio",
                    )
                ],
                "percentunit",
                "Router lookups answered from the cache",
                key=True,
            ),
            Panel(
                "Cache lookup latency (router)",
                quantiles("llm_cache_operation_duration_seconds", "operation"),
                "s",
                key=True,
            ),
            Panel(
                "Cache entries",
                [('max(llm_cache_entries_total{job="semantic-cache"})', "entries")],
                "short",
                key=True,
            ),
            Panel(
                "Cache errors",
                [(f"sum by (operation, code) (rate(llm_cache_errors_total[{R}]))", "{{operation}} {{code}}")],
                "ops",
                "Redis down, slow or refusing (the cache then answers misses)",
            ),
        ],
    ),
    (
        "Guards",
        [
            Panel(
                "Blocked requests",
                [(f"sum by (reason) (rate(llm_request_blocked_total[{R}]))", "{{reason}}")],
                "reqps",
                "Jailbreak and PII blocks, and guards failing closed (classifier_unavailable)",
                key=True,
            ),
            Panel(
                "PII policy fallbacks and violations",
                [
                    (
                        f'sum(rate(llm_routing_reason_codes_total{{reason_code=~".*pii_fallback"}}[{R}]))',
                        "moved to a model whose policy allows the PII",
                    ),
                    (f"sum by (pii_type) (rate(llm_pii_violations_total[{R}]))", "violation {{pii_type}}"),
                ],
                "reqps",
            ),
        ],
    ),
    (
        "Availability",
        [
            Panel(
                "Targets up",
                [('up{job=~"semantic-router|semantic-cache|triton|envoy"}', "{{job}} {{instance}}")],
                "short",
                key=True,
            ),
            Panel(
                "Config reloads",
                [(f"sum by (result) (increase(semantic_router_config_reloads_total[{R}]))", "{{result}}")],
                "short",
            ),
        ],
    ),
]


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": panel.options or {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
            for i, (expr, legend) in enumerate(panel.targets)
        ],
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    next_id = 1
    for title, row in ROWS:
        panels.append({"id": next_id, "type": "row", "title": title, "collapsed": False, "gridPos": _row_pos(y)})
        next_id += 1
        y += 1
        x = 0
        for panel in row:
            if x + panel.width > 24:
                x, y = 0, y + 8
            panels.append(panel_json(panel, next_id, x, y))
            next_id += 1
            x += panel.width
        y += 8
    return {
        "uid": "semantic-router",
        "title": "Semantic Router",
        "tags": ["semantic-router", "triton"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "panels": panels,
        "templating": {"list": []},
        "annotations": {"list": []},
    }


def _row_pos(y: int) -> dict[str, int]:
    return {"h": 1, "w": 24, "x": 0, "y": y}


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"
