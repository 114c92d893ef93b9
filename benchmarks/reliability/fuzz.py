"""Fuzz the router's HTTP surfaces with generated input (hypothesis) and check that every answer is deliberate.

Targets (each gets a share of the inputs):
- chat bodies through Envoy (`/v1/chat/completions`): wrong types, huge and deeply nested JSON, odd Unicode,
  lone-surrogate escapes, multimodal parts, tool payloads, streaming flags, truncated bytes;
- the same kinds of bodies on `/v1/completions` and `/v1/responses` through Envoy, and on the direct proxy;
- the classification API (`/api/v1/classify/{intent,pii,security,batch}`), bodies shaped from its OpenAPI schema
  with values of every type;
- the cache service (`/v1/cache/{lookup,store,invalidate}`), with and without the admin token.

A failure is: any 5xx that is not a documented one (503 `classifier_unavailable`/`classifier_overloaded` with a
`Retry-After`), a dropped connection or a hang past the timeout, or a 4xx whose body is not an OpenAI-style error
(`{"error": {"message", "type", ...}}`).

    python benchmarks/reliability/fuzz.py --inputs 10000        # starts its own stack on free ports
    python benchmarks/reliability/fuzz.py --inputs 500 --seed 7

Writes benchmarks/results/fuzz.json and fuzz.md. The short form runs in `make test`
(tests/integration/test_fuzz.py, a few hundred inputs against the test stack).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DOCUMENTED_5XX = {"classifier_unavailable", "classifier_overloaded"}

# --- strategies ----------------------------------------------------------------------------------------------

_odd_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=200),
    st.sampled_from(["", " ", "\u202e\u200b", "z\u0338\u0321a", "\x00\x01", "MoM", "auto"]),
    st.builds(lambda ch, n: ch * n, st.sampled_from(["a", "🙂", "é "]), st.sampled_from([500, 20_000])),
)
_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), _odd_text
)
_json = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
_part = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": _odd_text}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": _odd_text})}),
    st.fixed_dictionaries({"type": st.just("input_audio"), "input_audio": _json}),
    st.dictionaries(st.sampled_from(["type", "text", "x"]), _json, max_size=3),
)
_content = st.one_of(_odd_text, st.lists(_part, max_size=4), _json)
_message = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "tool", "developer"]), "content": _content}
    ),
    st.fixed_dictionaries(
        {"role": st.just("assistant"), "content": st.none(), "tool_calls": _json},
    ),
    _json,
)
_tool = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("function"), "function": st.fixed_dictionaries({"name": _odd_text, "parameters": _json})}
    ),
    _json,
)
_chat = st.fixed_dictionaries(
    {"model": st.one_of(st.sampled_from(["MoM", "auto"]), _scalar), "messages": st.lists(_message, max_size=5)},
    optional={
        "stream": st.one_of(st.booleans(), _scalar),
        "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": st.booleans()}), _json),
        "tools": st.one_of(st.lists(_tool, max_size=3), _json),
        "tool_choice": st.one_of(st.sampled_from(["auto", "none", "required"]), _json),
        "max_tokens": _scalar,
        "temperature": _scalar,
        "reasoning_effort": _scalar,
        "chat_template_kwargs": _json,
        "extra": _json,
    },
)
_completions = st.fixed_dictionaries(
    {"model": st.one_of(st.just("MoM"), _scalar)},
    optional={"prompt": st.one_of(_odd_text, st.lists(_odd_text, max_size=3), _json), "stream": _scalar},
)
_responses = st.fixed_dictionaries(
    {"model": st.one_of(st.just("MoM"), _scalar)},
    optional={
        "input": st.one_of(_odd_text, st.lists(st.one_of(_message, _json), max_size=3), _json),
        "instructions": _scalar,
    },
)
_options = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "return_probabilities": _scalar,
            "confidence_threshold": _scalar,
            "entity_types": st.one_of(st.lists(_odd_text, max_size=3), _json),
            "mask_entities": _scalar,
        },
    ),
    _json,
)
_classify = st.fixed_dictionaries(
    {},
    optional={
        "text": st.one_of(_odd_text, _scalar),
        "texts": st.one_of(st.lists(_odd_text, max_size=5), _json),
        "task_type": st.one_of(st.sampled_from(["intent", "pii", "security", "all"]), _scalar),
        "options": _options,
    },
)
_embedding = st.one_of(
    st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=384, max_size=384),
    st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=5),
    _odd_text,
    _scalar,
)
_cache_body = st.fixed_dictionaries(
    {},
    optional={
        "prompt": st.one_of(_odd_text, _scalar),
        "embedding": _embedding,
        "model": st.one_of(_odd_text, _scalar),
        "fingerprint": st.one_of(_odd_text, _scalar),
        "tenant": st.one_of(_odd_text, _scalar),
        "threshold": _scalar,
        "response": _json,
        "ttl_seconds": _scalar,
        "entry_id": _scalar,
        "all": st.just(False),  # never wipe the whole cache mid-run
    },
)


_name = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), min_size=1, max_size=40)
_cache_valid = st.fixed_dictionaries(
    {
        "prompt": _odd_text.filter(bool),
        "embedding": st.lists(st.floats(-1, 1, width=32), min_size=384, max_size=384),
        "model": _name,
        "fingerprint": _name,
    },
    optional={
        "tenant": _name,
        "threshold": st.floats(0, 1),
        "response": st.dictionaries(st.text(max_size=8), _json, max_size=4),
        "ttl_seconds": st.integers(1, 3600),
    },
)
"""Bodies the cache service should accept (so lookups, stores and invalidations run, not only their validation)."""


@st.composite
def _raw(draw: st.DrawFn, body: st.SearchStrategy[Any]) -> bytes:
    """A generated body as bytes, sometimes mangled: lone-surrogate escapes, deep nesting, truncation, junk."""
    value = draw(body)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()), allow_nan=False)
    mangle = draw(st.sampled_from(["none"] * 6 + ["surrogate", "deep", "truncate", "junk", "deep_field"]))
    if mangle == "surrogate":
        text = text.replace('"', '"\\ud800', 1) if '"' in text else '"\\udfff"'
    elif mangle == "deep":
        depth = draw(st.sampled_from([100, 1000, 5000, 100_000]))
        text = "[" * depth + "]" * depth
    elif mangle == "deep_field" and text.startswith("{") and len(text) > 2:
        depth = draw(st.sampled_from([900, 3000, 20_000]))
        text = '{"x": ' + "[" * depth + "]" * depth + ", " + text[1:]
    elif mangle == "truncate" and text:
        text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
    elif mangle == "junk":
        return draw(st.binary(max_size=64))
    return text.encode("utf-8", "surrogatepass")


# --- checking ------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    documented_5xx: int = 0
    seconds: float = 0.0
    failing_bodies: list[tuple[str, bytes]] = field(default_factory=list)
    """The first failing inputs whole (`--failures-dir` writes them out, to replay)."""

    def check(self, target: str, body: bytes, r: httpx.Response | Exception) -> None:
        self.sent[target] += 1
        if isinstance(r, Exception):
            self._fail(target, body, f"no answer: {r!r}")
            return
        self.statuses[f"{target} {r.status_code}"] += 1
        if r.status_code < 400:
            return
        try:
            error = r.json()["error"]
            ok_shape = isinstance(error, dict) and bool(error.get("message")) and bool(error.get("type"))
        except (ValueError, KeyError, TypeError):
            ok_shape = False
        if not ok_shape:
            self._fail(target, body, f"HTTP {r.status_code} without an OpenAI error body: {r.text[:200]}")
        elif r.status_code >= 500:
            if error.get("code") in DOCUMENTED_5XX and "retry-after" in r.headers:
                self.documented_5xx += 1
            else:
                self._fail(target, body, f"HTTP {r.status_code}: {r.text[:200]}")

    def _fail(self, target: str, body: bytes, why: str) -> None:
        if len(self.failing_bodies) < 20:
            self.failing_bodies.append((target, body))
        if len(self.failures) < 50:
            self.failures.append({"target": target, "why": why, "body": body[:300].decode("utf-8", "replace")})
        else:
            self.failures.append({"target": target, "why": why})

    @property
    def total(self) -> int:
        return sum(self.sent.values())


@dataclass(frozen=True)
class Targets:
    envoy: str
    router: str
    cache: str | None
    admin_token: str


def run_fuzz(targets: Targets, inputs: int, seed: int = 0, timeout_s: float = 30.0) -> Tally:
    """Send `inputs` generated requests (sequentially) and tally the answers."""
    tally = Tally()
    admin = {"authorization": f"Bearer {targets.admin_token}"}
    json_headers = {"content-type": "application/json", "x-vsr-cache-control": "no-cache, no-store"}
    plan: list[tuple[str, str, str, st.SearchStrategy[Any], bool]] = [
        ("chat via envoy", targets.envoy, "/v1/chat/completions", _chat, False),
        ("chat via proxy", targets.router, "/v1/chat/completions", _chat, False),
        ("completions via envoy", targets.envoy, "/v1/completions", _completions, False),
        ("responses via envoy", targets.envoy, "/v1/responses", _responses, False),
        ("classify intent", targets.router, "/api/v1/classify/intent", _classify, False),
        ("classify pii", targets.router, "/api/v1/classify/pii", _classify, False),
        ("classify security", targets.router, "/api/v1/classify/security", _classify, False),
        ("classify batch", targets.router, "/api/v1/classify/batch", _classify, False),
    ]
    if targets.cache:
        plan += [
            ("cache lookup", targets.cache, "/v1/cache/lookup", _cache_body | _cache_valid, False),
            ("cache store", targets.cache, "/v1/cache/store", _cache_body | _cache_valid, True),
            ("cache invalidate", targets.cache, "/v1/cache/invalidate", _cache_body, True),
        ]
    weights = [4, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1][: len(plan)]
    choices = [i for i, w in enumerate(weights) for _ in range(w)]
    started = time.perf_counter()
    with httpx.Client(timeout=timeout_s) as client:

        @settings(
            max_examples=inputs,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            derandomize=False,
            suppress_health_check=list(HealthCheck),
        )
        @given(data=st.data())
        def one(data: st.DataObject) -> None:
            name, base, path, strategy, needs_admin = plan[data.draw(st.sampled_from(choices))]
            raw = data.draw(_raw(strategy))
            headers = dict(json_headers)
            if needs_admin and data.draw(st.integers(0, 3)) > 0:  # mostly with the token, sometimes without
                headers |= admin
            try:
                r: httpx.Response | Exception = client.post(base + path, content=raw, headers=headers)
            except httpx.HTTPError as e:
                r = e
            tally.check(name, raw, r)

        hypothesis_seed(seed)(one)()
    tally.seconds = time.perf_counter() - started
    return tally


# --- the script ----------------------------------------------------------------------------------------------


def _report(tally: Tally, inputs: int, seed: int = 0) -> str:
    command = f"python benchmarks/reliability/fuzz.py --inputs {inputs}" + (f" --seed {seed}" if seed else "")
    lines = [
        f"# Fuzz run ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"`{command}`: {tally.total} inputs in {tally.seconds:.0f} s, "
        f"{len(tally.failures)} failures (undocumented 5xx, dropped or hung connections, errors without an "
        f"OpenAI-style body); {tally.documented_5xx} documented 503s (classifier shed/unavailable, with Retry-After).",
        "",
        "| target | sent | answers (status: count) |",
        "| --- | ---: | --- |",
    ]
    for target, sent in sorted(tally.sent.items()):
        answers = ", ".join(
            f"{k.rsplit(' ', 1)[1]}: {v}" for k, v in sorted(tally.statuses.items()) if k.rsplit(" ", 1)[0] == target
        )
        lines.append(f"| {target} | {sent} | {answers} |")
    if tally.failures:
        lines += ["", "Failures (first ones):", ""]
        lines += [f"- {f['target']}: {f['why']}" for f in tally.failures[:20]]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--failures-dir", type=Path, default=None, help="write the first failing bodies here")
    args = parser.parse_args()
    from tests.integration.conftest import start_stack

    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        running = start_stack(Path(tmp))
        try:
            targets = Targets(
                running.envoy_url,
                running.router_url,
                f"http://127.0.0.1:{running.ports.cache}",
                running.stack.admin_token,
            )
            tally = run_fuzz(targets, args.inputs, args.seed)
            dead = running.stack.dead()
        finally:
            running.stack.down()
    report = _report(tally, args.inputs, args.seed)
    if dead:
        report += f"\nProcesses that exited during the run: {', '.join(dead)}\n"
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fuzz.md").write_text(report)
    payload = {
        "inputs": tally.total,
        "seconds": round(tally.seconds, 1),
        "failures": tally.failures,
        "documented_5xx": tally.documented_5xx,
        "sent": dict(tally.sent),
        "statuses": dict(tally.statuses),
        "dead_processes": dead,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (args.out / "fuzz.json").write_text(json.dumps(payload, indent=2))
    if args.failures_dir is not None:
        args.failures_dir.mkdir(parents=True, exist_ok=True)
        for i, (target, body) in enumerate(tally.failing_bodies):
            (args.failures_dir / f"{i:02d}-{target.replace(' ', '_')}.json").write_bytes(body)
    return 1 if tally.failures or dead else 0


if __name__ == "__main__":
    sys.exit(main())
