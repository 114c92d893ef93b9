"""Fuzz the router's HTTP surfaces and check that every answer is deliberate: schema-driven cases from the router's
own OpenAPI document (schemathesis), with byte-level mutations, against the default stack with the local LLM.

Cases:
- for each operation of `GET /openapi.json` that takes a body (chat completions, completions, responses, the four
  classification endpoints): schemathesis generates bodies from its request schema, valid ones (POSITIVE: they reach
  the local LLM and get a generated answer) and invalid ones (NEGATIVE: wrong types, missing fields, values out of
  range, not JSON); the prompt paths go through Envoy, chat also through the direct proxy;
- byte-level mutations of a share of them: bytes that are not UTF-8 (a stray continuation byte, an encoded surrogate,
  a sequence cut short, an overlong form), lone-surrogate escapes, huge numbers (1e400, 5,000 digits), deep nesting
  (up to 100,000 levels), truncation, random junk;
- paths the router does not serve (`/v1/messages`, `/v1/embeddings`, ...) through Envoy: a 404 from the router;
- the cache service (`/v1/cache/{lookup,store,invalidate}`, not part of the router's document), with hand-written
  strategies, with and without the admin token.

A failure is: any 5xx that is not a documented one (503 `classifier_unavailable`/`classifier_overloaded` with a
`Retry-After`), a dropped connection or a hang past the timeout, or a 4xx whose body is not an OpenAI-style error
(`{"error": {"message", "type", ...}}`).

    python benchmarks/reliability/fuzz.py --inputs 10000        # starts its own stack (local LLM) on free ports
    python benchmarks/reliability/fuzz.py --inputs 500 --seed 7

The stack's local LLM generates at most `--max-tokens` tokens per answer (default 8), so valid cases cost about a
second each on 2 cores; every request still carries the limit the case asked for through Envoy and the router.
Writes benchmarks/results/fuzz.json and fuzz.md. The short form runs in `make test`
(tests/integration/test_fuzz.py, a few hundred cases against the same kind of stack).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from schemathesis import GenerationMode

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


SCHEMA_OPERATIONS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/api/v1/classify/intent",
    "/api/v1/classify/pii",
    "/api/v1/classify/security",
    "/api/v1/classify/batch",
)


def schema_strategies(document: dict[str, Any]) -> dict[str, st.SearchStrategy[tuple[str, Any]]]:
    """Per operation of the router's OpenAPI document: (mode, body) with mode "positive" (valid for the schema)
    or "negative" (not valid), drawn half and half."""
    schema = schemathesis.openapi.from_dict(document)
    out: dict[str, st.SearchStrategy[tuple[str, Any]]] = {}
    for path in SCHEMA_OPERATIONS:
        op = schema[path]["POST"]
        out[path] = st.one_of(
            op.as_strategy(GenerationMode.POSITIVE).map(lambda case: ("positive", case.body)),
            op.as_strategy(GenerationMode.NEGATIVE).map(lambda case: ("negative", case.body)),
        )
    return out


BAD_UTF8 = (b"\xff", b"\x80", b"\xc3", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf0\x9f", b"\xc0\xaf", b"\xf4\x90\x80\x80")
"""Byte sequences that are not UTF-8: stray bytes, encoded surrogates, cut sequences, overlong and out-of-range."""
HUGE_NUMBERS = ("1e400", "-1e400", "9" * 5000, "1" + "0" * 30, "-" + "9" * 40, "1e-400", "2e308")
MUTATIONS = ["none"] * 7 + ["not_utf8", "surrogate", "huge_number", "deep", "deep_field", "truncate", "junk"]
_NUMBER = re.compile(rb"(?<=[:\[,])\s*-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


@st.composite
def _raw(draw: st.DrawFn, cases: st.SearchStrategy[tuple[str, Any]]) -> tuple[str, bytes]:
    """A generated body as bytes and its kind (positive, negative, or the mutation applied)."""
    mode, value = draw(cases)
    if isinstance(value, bytes):  # a negative case that is not JSON at all
        return mode, value
    raw = json.dumps(value, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    mangle = draw(st.sampled_from(MUTATIONS))
    if mangle == "none":
        return mode, raw
    if mangle == "not_utf8":
        quotes = [i for i, b in enumerate(raw) if b == 0x22] or [0]
        at = draw(st.sampled_from(quotes)) + 1
        raw = raw[:at] + draw(st.sampled_from(BAD_UTF8)) + raw[at:]
    elif mangle == "surrogate":
        text = raw.decode("utf-8", "surrogatepass")
        raw = (text.replace('"', '"\\ud800', 1) if '"' in text else '"\\udfff"').encode()
    elif mangle == "huge_number":
        huge = draw(st.sampled_from(HUGE_NUMBERS)).encode()
        if _NUMBER.search(raw):
            raw = _NUMBER.sub(b" " + huge, raw, count=1)
        elif raw.startswith(b"{") and len(raw) > 2:
            raw = b'{"max_tokens": ' + huge + b", " + raw[1:]
        else:
            raw = huge
    elif mangle == "deep":
        depth = draw(st.sampled_from([100, 1000, 5000, 100_000]))
        raw = b"[" * depth + b"]" * depth
    elif mangle == "deep_field" and raw.startswith(b"{") and len(raw) > 2:
        depth = draw(st.sampled_from([900, 3000, 20_000]))
        raw = b'{"x": ' + b"[" * depth + b"]" * depth + b", " + raw[1:]
    elif mangle == "truncate" and raw:
        raw = raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    elif mangle == "junk":
        raw = draw(st.binary(max_size=64))
    return f"{mode}+{mangle}", raw


UNSERVED_PATHS = ["/v1/messages", "/v1/embeddings", "/v1/files", "/v1/chat/completions/x", "/admin", "/"]


# --- checking ------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    """Cases per kind: positive / negative schema cases, and each mutation applied to them."""
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


def run_fuzz(targets: Targets, inputs: int, seed: int = 0, timeout_s: float = 60.0) -> Tally:
    """Send `inputs` generated requests (sequentially) and tally the answers. The request schemas come from the
    router's own `GET /openapi.json`."""
    tally = Tally()
    admin = {"authorization": f"Bearer {targets.admin_token}"}
    json_headers = {"content-type": "application/json", "x-vsr-cache-control": "no-cache, no-store"}
    document = httpx.get(f"{targets.router}/openapi.json", timeout=30).raise_for_status().json()
    cases = schema_strategies(document)
    chat = cases["/v1/chat/completions"]
    unserved = st.sampled_from(UNSERVED_PATHS)
    Plan = tuple[str, str, st.SearchStrategy[str], st.SearchStrategy[tuple[str, Any]], bool, int]
    plan: list[Plan] = [
        ("chat via envoy", targets.envoy, st.just("/v1/chat/completions"), chat, False, 4),
        ("chat via proxy", targets.router, st.just("/v1/chat/completions"), chat, False, 2),
        ("completions via envoy", targets.envoy, st.just("/v1/completions"), cases["/v1/completions"], False, 1),
        ("responses via envoy", targets.envoy, st.just("/v1/responses"), cases["/v1/responses"], False, 2),
        ("unserved via envoy", targets.envoy, unserved, chat, False, 1),
    ]
    for task in ("intent", "pii", "security", "batch"):
        path = f"/api/v1/classify/{task}"
        plan.append((f"classify {task}", targets.router, st.just(path), cases[path], False, 1))
    if targets.cache:
        lookups = (_cache_body | _cache_valid).map(lambda body: ("hand-written", body))
        invalidations = _cache_body.map(lambda body: ("hand-written", body))
        plan += [
            ("cache lookup", targets.cache, st.just("/v1/cache/lookup"), lookups, False, 1),
            ("cache store", targets.cache, st.just("/v1/cache/store"), lookups, True, 1),
            ("cache invalidate", targets.cache, st.just("/v1/cache/invalidate"), invalidations, True, 1),
        ]
    choices = [i for i, entry in enumerate(plan) for _ in range(entry[-1])]
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
            name, base, paths, strategy, needs_admin, _ = plan[data.draw(st.sampled_from(choices))]
            path = data.draw(paths)
            kind, raw = data.draw(_raw(strategy))
            headers = dict(json_headers)
            if needs_admin and data.draw(st.integers(0, 3)) > 0:  # mostly with the token, sometimes without
                headers |= admin
            try:
                r: httpx.Response | Exception = client.post(base + path, content=raw, headers=headers)
            except httpx.HTTPError as e:
                r = e
            tally.kinds[kind] += 1
            tally.check(name, raw, r)

        hypothesis_seed(seed)(one)()
    tally.seconds = time.perf_counter() - started
    return tally


# --- the script ----------------------------------------------------------------------------------------------


def _report(tally: Tally, inputs: int, seed: int, backends: str) -> str:
    command = f"python benchmarks/reliability/fuzz.py --inputs {inputs}" + (f" --seed {seed}" if seed else "")
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(tally.kinds.items()))
    lines = [
        f"# Fuzz run ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"`{command}`: {tally.total} inputs in {tally.seconds:.0f} s against the default config with {backends}, "
        f"{len(tally.failures)} failures (undocumented 5xx, dropped or hung connections, errors without an "
        f"OpenAI-style body); {tally.documented_5xx} documented 503s (classifier shed/unavailable, with Retry-After).",
        "",
        f"Cases by kind: {kinds}.",
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
    parser.add_argument("--max-tokens", type=int, default=8, help="the local LLM's cap on every answer")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a request counts as hung")
    args = parser.parse_args()
    from local_stack.local_llm import MODEL_NAME
    from tests.integration.conftest import start_stack

    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        running = start_stack(Path(tmp), local_llm=True, llm_max_tokens_cap=args.max_tokens)
        llm = running.stack.llm
        backends = (
            f"the local LLM ({MODEL_NAME}, at most {args.max_tokens} tokens an answer)"
            if llm is not None
            else f"canned demo backends ({running.stack.backend_note})"
        )
        try:
            targets = Targets(
                running.envoy_url,
                running.router_url,
                f"http://127.0.0.1:{running.ports.cache}",
                running.stack.admin_token,
            )
            tally = run_fuzz(targets, args.inputs, args.seed, timeout_s=args.timeout)
            dead = running.stack.dead()
        finally:
            running.stack.down()
    report = _report(tally, args.inputs, args.seed, backends)
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
        "backends": backends,
        "kinds": dict(tally.kinds),
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
