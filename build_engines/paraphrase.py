"""Held-out paraphrase pairs for the semantic cache: does an embedding keep cache hits right?

The authored pairs (`data/authored/paraphrase_pairs.jsonl`) are user prompts: paraphrases, where a cached
answer to `a` correctly answers `b`, and (mostly hard) non-paraphrases, where it would be wrong. The cache
hits when the cosine of the two L2-normalised embeddings is at least its similarity threshold, so hits are
scored as paraphrase detection: precision (hits that were right), recall (paraphrases that hit).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from build_engines.encoder import encode, load_tokenizer
from build_engines.evaluate import run_signals
from build_engines.export_onnx import session
from build_engines.paths import AUTHORED_DIR

__all__ = ["PAIRS_PATH", "Embed", "Pair", "cache_pair_scores", "load_pairs", "onnx_embedder"]

PAIRS_PATH = AUTHORED_DIR / "paraphrase_pairs.jsonl"

Embed = Callable[[Sequence[str]], NDArray[np.float32]]
"""Texts to L2-normalised embeddings, one row per text, in input order."""


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    paraphrase: bool
    kind: str


def load_pairs(path: Path = PAIRS_PATH) -> list[Pair]:
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            pairs.append(Pair(str(row["a"]), str(row["b"]), bool(row["paraphrase"]), str(row["kind"])))
    return pairs


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def cache_pair_scores(embed: Embed, pairs: Sequence[Pair], threshold: float) -> dict[str, Any]:
    """Cache hits (cosine >= threshold) scored as paraphrase detection, mean cosines, hit rate per kind."""
    texts = sorted({t for p in pairs for t in (p.a, p.b)})
    index = {t: i for i, t in enumerate(texts)}
    vectors = np.asarray(embed(texts), dtype=np.float32)
    a = vectors[[index[p.a] for p in pairs]]
    b = vectors[[index[p.b] for p in pairs]]
    cosine = np.sum(a * b, axis=1)
    hit = cosine >= threshold
    label = np.array([p.paraphrase for p in pairs], dtype=bool)
    tp = int(np.sum(hit & label))
    precision = _ratio(tp, int(hit.sum()))
    recall = _ratio(tp, int(label.sum()))
    kinds: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        kinds[p.kind].append(i)
    return {
        "n": len(pairs),
        "positives": int(label.sum()),
        "negatives": int((~label).sum()),
        "threshold": threshold,
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "mean_cosine_positive": float(cosine[label].mean()) if label.any() else 0.0,
        "mean_cosine_negative": float(cosine[~label].mean()) if (~label).any() else 0.0,
        "kind_hit_rate": {
            k: {"n": len(ix), "paraphrases": int(label[ix].sum()), "hit_rate": float(hit[ix].mean())}
            for k, ix in sorted(kinds.items())
        },
    }


def onnx_embedder(onnx_path: Path, tokenizer_json: Path | None = None) -> Embed:
    """The `embedding` output of a `signals` graph; `tokenizer_json` defaults to the base encoder's."""
    tokenizer = load_tokenizer(path=tokenizer_json.parent if tokenizer_json is not None else None)
    sess = session(onnx_path)

    def embed(texts: Sequence[str]) -> NDArray[np.float32]:
        rows = [e.ids for e in encode(tokenizer, texts)]
        out = run_signals(sess, rows, ["embedding"], desc="paraphrase pairs")["embedding"]
        vectors: NDArray[np.float32] = np.stack(out).astype(np.float32)
        return vectors

    return embed
