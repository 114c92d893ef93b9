"""Tool catalogue loading (VSR's tools_db.json) and cosine top-k."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from router_service.config import load_config, parse_config
from router_service.core.tools import (
    MAX_TOOLS,
    ToolEntry,
    ToolIndex,
    find_tools_db,
    load_tools_db,
    rank,
    tool_text,
)
from router_service.errors import ConfigError

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "vsr-classic"  # vendored, see its NOTICE.md


def test_reference_catalogue_loads() -> None:
    entries = load_tools_db(REFERENCE / "tools_db.json")
    assert [e.name for e in entries] == [
        "get_weather",
        "search_web",
        "calculate",
        "send_email",
        "create_calendar_event",
    ]
    weather = entries[0]
    assert weather.category == "weather" and "forecast" in weather.tags
    assert weather.description.startswith("Get current weather information, temperature")  # the rich text
    assert weather.tool["function"]["parameters"]["required"] == ["location"]


@pytest.mark.parametrize(
    ("query", "rows", "top_k", "threshold", "expected"),
    [
        pytest.param([1, 0], [[1, 0], [0, 1], [1, 1]], 3, 0.0, [0, 2, 1], id="best-first"),
        pytest.param([1, 0], [[1, 0], [0, 1], [1, 1]], 2, 0.0, [0, 2], id="top-k"),
        pytest.param([1, 0], [[1, 0], [0, 1], [1, 1]], 3, 0.5, [0, 2], id="threshold"),
        pytest.param([1, 0], [[2, 0], [5, 0]], 2, 0.0, [0, 1], id="ties-keep-row-order"),
        pytest.param([3, 0], [[0.5, 0.5], [10, 1]], 1, 0.0, [1], id="unnormalised-inputs"),
        pytest.param([0, 0], [[1, 0]], 1, 0.0, [], id="zero-query"),
        pytest.param([1, 0], [[1, 0]], 0, 0.0, [], id="top-k-zero"),
        pytest.param([1, 0], [[-1, 0]], 1, 0.0, [], id="negative-below-threshold"),
    ],
)
def test_rank(query: list[float], rows: list[list[float]], top_k: int, threshold: float, expected: list[int]) -> None:
    assert [i for i, _ in rank(query, rows, top_k, threshold)] == expected


def test_rank_scores_are_cosines() -> None:
    [(_, score)] = rank([1, 0], [[1, 1]], 1, 0.0)
    assert score == pytest.approx(2**-0.5, abs=1e-6)


def test_rank_rejects_mismatched_sizes() -> None:
    with pytest.raises(ValueError, match="size mismatch"):
        rank([1, 0, 0], [[1, 0]], 1, 0.0)


def entries(n: int) -> list[ToolEntry]:
    return [ToolEntry({"type": "function", "function": {"name": f"t{i}"}}, f"t{i}", f"tool {i}") for i in range(n)]


def test_index_normalises_and_searches() -> None:
    index = ToolIndex(entries(3), [[3, 0], [0, 2], [1, 1]])
    assert np.allclose(np.linalg.norm(index.embeddings, axis=1), 1.0)
    hits = index.search([1, 0.1], top_k=2, threshold=0.5)
    assert [(m.entry.name, round(m.score, 2)) for m in hits] == [("t0", 1.0), ("t2", 0.77)]
    assert len(index) == 3 and "3 tools" in repr(index)
    with pytest.raises(ValueError, match="read-only"):
        index.embeddings[0, 0] = 5


@pytest.mark.parametrize(
    ("n", "shape"),
    [pytest.param(2, (3, 4), id="rows"), pytest.param(2, (8,), id="not-2d")],
)
def test_index_needs_one_row_per_tool(n: int, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="one embedding row per tool"):
        ToolIndex(entries(n), np.ones(shape))


def test_build_embeds_the_catalogue_descriptions() -> None:
    seen: list[list[str]] = []

    def embed(texts: list[str]) -> npt.NDArray[np.float32]:
        seen.append(texts)
        return np.eye(len(texts), 8, dtype=np.float32)

    index = ToolIndex.build(entries(3), embed)
    assert seen == [["tool 0", "tool 1", "tool 2"]]
    assert index.search(np.eye(8)[1], 1, 0.9)[0].entry.name == "t1"
    assert len(ToolIndex.build([], embed)) == 0 and len(seen) == 1


async def test_from_config_with_an_async_embedder() -> None:
    cfg = load_config(REFERENCE / "config.yaml")  # tools_db_path: "config/tools_db.json"
    calls: list[int] = []

    async def embed(texts: list[str]) -> npt.NDArray[np.float32]:
        calls.append(len(texts))
        return np.eye(len(texts), dtype=np.float32)

    index = await ToolIndex.from_config(cfg, embed)
    assert calls == [5] and index.entries[0].name == "get_weather"


async def test_from_config_without_the_file(tmp_path: Path) -> None:
    text = (REFERENCE / "config.e2e.yaml").read_text().replace("config/tools_db.json", "missing.json")
    path = tmp_path / "config.yaml"
    path.write_text(text)
    cfg = load_config(path)
    with pytest.raises(ConfigError, match="no such file"):
        await ToolIndex.from_config(cfg, lambda texts: np.eye(len(texts)))


def test_find_tools_db_resolution(tmp_path: Path) -> None:
    found = find_tools_db(load_config(REFERENCE / "config.yaml"))
    assert found is not None and found.resolve() == (REFERENCE / "tools_db.json").resolve()
    nested = tmp_path / "conf" / "tools.json"
    nested.parent.mkdir()
    nested.write_text("[]")
    path = tmp_path / "config.yaml"
    path.write_text((REFERENCE / "config.e2e.yaml").read_text().replace("config/tools_db.json", "conf/tools.json"))
    assert find_tools_db(load_config(path)) == nested
    unset = parse_config((REFERENCE / "config.e2e.yaml").read_text().replace("tools_db_path", "#"))
    assert find_tools_db(unset) is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param({"tool": {}}, "must be a JSON list", id="not-list"),
        pytest.param([1], "[0]: must be an object", id="entry-not-object"),
        pytest.param([{"description": "x"}], "[0].tool: required object", id="tool-missing"),
        pytest.param(
            [{"tool": {"type": "function", "function": {"name": "a"}}}, {"tool": {"function": {}}}],
            "[1].tool.function.name: required non-empty string",
            id="name-missing",
        ),
        pytest.param(
            [{"tool": {"function": {"name": "a"}}, "tags": "x"}],
            "[0].tags: must be a list of strings",
            id="tags",
        ),
        pytest.param([{"tool": {"function": {"name": "a"}}}] * (MAX_TOOLS + 1), "exceed the limit", id="too-many"),
    ],
)
def test_bad_catalogues(tmp_path: Path, content: Any, expected: str) -> None:
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigError) as err:
        load_tools_db(path)
    assert any(m.startswith(expected) or expected in m for m in err.value.messages), err.value.messages
    assert err.value.source == str(path)


def test_catalogue_syntax_error_has_a_position(tmp_path: Path) -> None:
    path = tmp_path / "tools.json"
    path.write_text('[\n  {"tool": }\n]')
    with pytest.raises(ConfigError, match="line 2, column"):
        load_tools_db(path)


def test_entry_without_description_embeds_the_function_text(tmp_path: Path) -> None:
    path = tmp_path / "tools.json"
    path.write_text(json.dumps([{"tool": {"type": "function", "function": {"name": "f", "description": "does f"}}}]))
    assert load_tools_db(path)[0].description == "f: does f"


@pytest.mark.parametrize(
    ("tool", "text"),
    [
        pytest.param({"type": "function", "function": {"name": "f", "description": "does f"}}, "f: does f", id="full"),
        pytest.param({"type": "function", "function": {"name": "f"}}, "f", id="name-only"),
        pytest.param({"type": "custom", "name": "g", "description": "does g"}, "g: does g", id="flat"),
        pytest.param({"type": "x"}, '{"type": "x"}', id="opaque"),
    ],
)
def test_tool_text(tool: dict[str, Any], text: str) -> None:
    assert tool_text(tool) == text


def test_tool_text_is_bounded() -> None:
    long = {"type": "function", "function": {"name": "f", "description": "x" * 10_000}}
    assert len(tool_text(long)) == 2_000
