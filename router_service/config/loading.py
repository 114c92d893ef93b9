"""Reading a config: YAML text or file → `RouterConfig`, or a `ConfigError` listing every problem by key path.

Also the "ignored keys" log lines: the keys a file sets that are accepted and have no effect here
(`schema`'s `VSR_MODEL_KEYS` / `NOT_APPLIED_KEYS`).
"""

from __future__ import annotations

import difflib
import logging
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from router_service.config.policy import RouterConfig
from router_service.config.schema import key_step
from router_service.errors import ConfigError

__all__ = ["format_loc", "load_config", "log_ignored_keys", "parse_config"]

log = logging.getLogger(__name__)


def format_loc(loc: tuple[int | str, ...]) -> str:
    """`('categories', 3, 'model_scores', 0, 'score')` → `categories[3].model_scores[0].score`."""
    return "".join(key_step(part) for part in loc).lstrip(".") or "<root>"


def parse_config(text: str, source: str | Path | None = None) -> RouterConfig:
    """Validate YAML text. Raises ConfigError listing every problem with its key path."""
    label = str(source) if source is not None else None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError([f"YAML syntax error: {where}{problem}"], label) from e
    if raw is None:
        raise ConfigError(["the file is empty"], label)
    if not isinstance(raw, Mapping):
        raise ConfigError([f"the top level must be a mapping of keys, not {type(raw).__name__}"], label)
    try:
        cfg = RouterConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_messages(e), label) from e
    if isinstance(source, Path):
        cfg._source = source.resolve()
    return cfg


def load_config(path: str | Path) -> RouterConfig:
    """Read and validate a config file; logs (once) the VSR keys it accepts but ignores."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"cannot read the file: {e}"], str(path)) from e
    cfg = parse_config(text, path)
    log_ignored_keys(cfg, path)
    return cfg


def log_ignored_keys(cfg: RouterConfig, source: str | Path) -> None:
    """One info line for the VSR model-file keys, one for VSR knobs without effect (when present)."""
    model_keys = cfg.vsr_model_keys()
    if model_keys:
        log.info(
            "config %s: ignoring VSR model-file keys (models come from Triton): %s",
            source,
            ", ".join(model_keys),
        )
    idle = cfg.not_applied_keys()
    if idle:
        log.info("config %s: accepted VSR keys with no effect here: %s", source, ", ".join(idle))


def _messages(error: ValidationError) -> list[str]:
    out: list[str] = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        msg = str(item["msg"]).removeprefix("Value error, ").replace("Tuple should", "List should")
        if not loc:
            out.extend(line for line in msg.splitlines() if line)
        elif item["type"] == "extra_forbidden":
            out.append(f"{format_loc(loc)}: unknown key{_allowed_hint(loc)}")
        elif item["type"] == "missing":
            out.append(f"{format_loc(loc)}: required key is missing")
        else:
            out.append(f"{format_loc(loc)}: {msg}")
    return out


def _allowed_hint(loc: tuple[int | str, ...]) -> str:
    section = _model_at(RouterConfig, loc[:-1])
    if section is None:
        return ""
    allowed = sorted(f.alias or name for name, f in section.model_fields.items())
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    guess = f"; did you mean {close[0]!r}?" if close else ""
    return f"{guess} (allowed: {', '.join(allowed)})"


def _model_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The pydantic model class that validates the value at `loc`, following fields, lists and dicts."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {f.alias or n: f for n, f in current.model_fields.items()}
            if not isinstance(part, str) or part not in fields:
                return None
            current = fields[part].annotation
        elif get_origin(current) in (list, tuple):
            current = get_args(current)[0]
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """`X | None` → X, `Annotated[X, ...]` → X."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp
