"""Automatic tool selection: VSR's tool catalogue (`tools_db.json`) and cosine top-k over tool embeddings.

Pure numpy. The router never runs a model itself, so this module takes embeddings as input: the service
embeds `ToolIndex.texts(entries)` through Triton (the same `embedding` output as the classifiers) and builds
the index with `ToolIndex(entries, embeddings)` or `ToolIndex.build(entries, embed)`.

The catalogue is bounded (`MAX_TOOLS`), and so is every answer (`top_k`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from router_service.errors import ConfigError

if TYPE_CHECKING:
    from router_service.config import RouterConfig

__all__ = [
    "MAX_TOOLS",
    "ToolEntry",
    "ToolIndex",
    "ToolMatch",
    "find_tools_db",
    "load_tools_db",
    "rank",
    "tool_name",
    "tool_text",
]

MAX_TOOLS = 10_000
"""Upper bound on catalogue size: the index is a dense matrix searched on every request."""

MAX_TEXT_CHARS = 2_000
"""A tool description longer than this adds nothing to a 512-token embedding; cut it before Triton sees it."""

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ToolEntry:
    """One catalogue tool: `tool` is the OpenAI tool object sent upstream, `description` the text embedded."""

    tool: Mapping[str, Any]
    name: str
    description: str
    category: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ToolMatch:
    entry: ToolEntry
    score: float


def tool_name(tool: Mapping[str, Any]) -> str:
    function = tool.get("function")
    if isinstance(function, Mapping) and isinstance(function.get("name"), str):
        return str(function["name"])
    return str(tool.get("name") or "")


def tool_text(tool: Mapping[str, Any]) -> str:
    """The text that stands for a request's tool: `name: description`, else the name, else its JSON."""
    function = tool.get("function")
    source = function if isinstance(function, Mapping) else tool
    name = tool_name(tool)
    description = source.get("description")
    if isinstance(description, str) and description.strip():
        text = f"{name}: {description}" if name else description
    else:
        text = name or json.dumps(tool, sort_keys=True, default=str)
    return text[:MAX_TEXT_CHARS]


def normalise(matrix: npt.ArrayLike) -> Vector:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    array = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    return np.divide(array, norms, out=np.zeros_like(array), where=norms > 0)


def rank(query: npt.ArrayLike, matrix: npt.ArrayLike, top_k: int, threshold: float) -> list[tuple[int, float]]:
    """(row, cosine) of the `top_k` rows most similar to `query` with similarity ≥ `threshold`, best first.

    Ties keep row order, so the answer is deterministic. Inputs need not be normalised.
    """
    rows = normalise(np.atleast_2d(np.asarray(matrix, dtype=np.float32)))
    q = normalise(np.asarray(query, dtype=np.float32).reshape(-1))
    if top_k <= 0 or rows.shape[0] == 0 or not np.any(q):
        return []
    if rows.shape[1] != q.shape[0]:
        raise ValueError(f"embedding size mismatch: query {q.shape[0]}, rows {rows.shape[1]}")
    scores = rows @ q
    order = np.argsort(-scores, kind="stable")
    return [(int(i), float(scores[i])) for i in order[:top_k] if scores[i] >= threshold]


class ToolIndex:
    """Catalogue entries with their unit-length embeddings (one row per entry). Immutable once built."""

    __slots__ = ("_embeddings", "_entries")

    def __init__(self, entries: Sequence[ToolEntry], embeddings: npt.ArrayLike) -> None:
        matrix = np.asarray(embeddings, dtype=np.float32)
        if len(entries) > MAX_TOOLS:
            raise ValueError(f"{len(entries)} tools exceed the limit of {MAX_TOOLS}")
        if matrix.ndim != 2 or matrix.shape[0] != len(entries):
            raise ValueError(f"need one embedding row per tool: {len(entries)} tools, array of shape {matrix.shape}")
        self._entries = tuple(entries)
        self._embeddings = normalise(matrix)
        self._embeddings.setflags(write=False)

    @property
    def entries(self) -> tuple[ToolEntry, ...]:
        return self._entries

    @property
    def embeddings(self) -> Vector:
        """Unit-length rows, read-only."""
        return self._embeddings

    def __repr__(self) -> str:
        return f"ToolIndex({len(self._entries)} tools, dim={self._embeddings.shape[1] if self._entries else 0})"

    @staticmethod
    def texts(entries: Sequence[ToolEntry]) -> list[str]:
        """What to embed for each entry, in order."""
        return [e.description[:MAX_TEXT_CHARS] for e in entries]

    @classmethod
    def build(cls, entries: Sequence[ToolEntry], embed: Callable[[list[str]], npt.ArrayLike]) -> ToolIndex:
        if not entries:
            return cls((), np.zeros((0, 0), dtype=np.float32))
        return cls(entries, embed(cls.texts(entries)))

    @classmethod
    def from_file(cls, path: str | Path, embed: Callable[[list[str]], npt.ArrayLike]) -> ToolIndex:
        return cls.build(load_tools_db(path), embed)

    @classmethod
    async def from_config(
        cls, cfg: RouterConfig, embed: Callable[[list[str]], npt.ArrayLike | Awaitable[npt.ArrayLike]]
    ) -> ToolIndex:
        """The catalogue `tools.tools_db_path` names, embedded with `embed` (sync or async, e.g. Triton).

        The file is read in a worker thread so the event loop never blocks on disk.
        Raises ConfigError when the file is missing or invalid.
        """
        path = find_tools_db(cfg)
        if path is None:
            where = str(cfg.source_path) if cfg.source_path else None
            raise ConfigError([f"tools.tools_db_path: no such file: {cfg.tools.tools_db_path!r}"], where)
        entries = await asyncio.to_thread(load_tools_db, path)
        if not entries:
            return cls((), np.zeros((0, 0), dtype=np.float32))
        result = embed(cls.texts(entries))
        vectors = await result if inspect.isawaitable(result) else result
        return cls(entries, vectors)

    def __len__(self) -> int:
        return len(self.entries)

    def search(self, query: npt.ArrayLike, top_k: int, threshold: float) -> tuple[ToolMatch, ...]:
        hits = rank(query, self.embeddings, top_k, threshold) if self.entries else []
        return tuple(ToolMatch(self.entries[i], score) for i, score in hits)


# --- the catalogue file ---------------------------------------------------------------------------------


def find_tools_db(cfg: RouterConfig) -> Path | None:
    """Where `tools.tools_db_path` points, or None when unset or missing.

    VSR writes the path relative to its own checkout (`config/tools_db.json`), so after the path relative to
    the config file's folder this also tries the file name in that folder and the path relative to the
    working directory.
    """
    value = cfg.tools.tools_db_path
    if not value:
        return None
    options = [cfg.resolve_path(value)]
    if cfg.source_path is not None:
        options.append(cfg.source_path.parent / Path(value).name)
    options.append(Path(value))
    return next((p for p in options if p.is_file()), None)


def load_tools_db(path: str | Path) -> tuple[ToolEntry, ...]:
    """Parse VSR's tools_db.json: a list of `{tool: <OpenAI tool>, description, category?, tags?}`.

    Raises ConfigError with every problem, each with its JSON path.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"cannot read the tools database: {e}"], str(path)) from e
    except json.JSONDecodeError as e:
        raise ConfigError([f"line {e.lineno}, column {e.colno}: {e.msg}"], str(path)) from e
    if not isinstance(raw, list):
        raise ConfigError(["the tools database must be a JSON list of tool entries"], str(path))
    if len(raw) > MAX_TOOLS:
        raise ConfigError([f"{len(raw)} tools exceed the limit of {MAX_TOOLS}"], str(path))
    problems = [p for i, item in enumerate(raw) for p in _entry_problems(i, item)]
    if problems:
        raise ConfigError(problems, str(path))
    return tuple(_entry(item) for item in raw)


def _entry_problems(i: int, item: Any) -> Iterator[str]:
    where = f"[{i}]"
    if not isinstance(item, Mapping):
        yield f"{where}: must be an object"
        return
    tool = item.get("tool")
    function = tool.get("function") if isinstance(tool, Mapping) else None
    if not isinstance(tool, Mapping):
        yield f"{where}.tool: required object (an OpenAI tool)"
    elif not isinstance(function, Mapping) or not isinstance(function.get("name"), str) or not function["name"]:
        yield f"{where}.tool.function.name: required non-empty string"
    description = item.get("description")
    if description is not None and not isinstance(description, str):
        yield f"{where}.description: must be a string"
    tags = item.get("tags")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        yield f"{where}.tags: must be a list of strings"


def _entry(item: Mapping[str, Any]) -> ToolEntry:
    tool = item["tool"]
    description = item.get("description") or tool_text(tool)
    category = item.get("category")
    return ToolEntry(
        tool=tool,
        name=tool_name(tool),
        description=description,
        category=category if isinstance(category, str) else None,
        tags=tuple(item.get("tags") or ()),
    )
