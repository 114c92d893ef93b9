from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from build_engines.paraphrase import PAIRS_PATH, Pair, cache_pair_scores, load_pairs


def test_authored_pairs_are_valid() -> None:
    pairs = load_pairs()
    assert PAIRS_PATH.name == "paraphrase_pairs.jsonl"
    assert len(pairs) >= 400
    assert {p.paraphrase for p in pairs} == {True, False}
    assert all(p.a.strip() and p.b.strip() and p.kind for p in pairs)
    assert all(p.a != p.b for p in pairs)
    keys = [frozenset((p.a, p.b)) for p in pairs]
    assert len(set(keys)) == len(keys)
    positives = sum(p.paraphrase for p in pairs)
    assert 0.4 <= positives / len(pairs) <= 0.6


# Unit vectors at known angles: cos(x, y) = 0.6, cos(x, z) = 0.96, cos(y, z) = 0.8.
VECTORS = {
    "x": [1.0, 0.0],
    "y": [0.6, 0.8],
    "z": [0.96, 0.28],
}


def _embed(texts: Sequence[str]) -> NDArray[np.float32]:
    return np.array([VECTORS[t] for t in texts], dtype=np.float32)


PAIRS = [
    Pair("x", "z", True, "reword"),  # 0.96: hit, right
    Pair("y", "z", True, "typo"),  # 0.80: miss at 0.9, hit at 0.8
    Pair("x", "y", False, "number"),  # 0.60: no hit
    Pair("z", "x", False, "entity"),  # 0.96: hit, wrong
]


def test_cache_pair_scores_by_hand() -> None:
    result = cache_pair_scores(_embed, PAIRS, 0.9)
    assert (result["n"], result["positives"], result["negatives"], result["threshold"]) == (4, 2, 2, 0.9)
    assert result["precision"] == pytest.approx(0.5)  # 2 hits, 1 paraphrase
    assert result["recall"] == pytest.approx(0.5)  # 1 of 2 paraphrases hit
    assert result["f1"] == pytest.approx(0.5)
    assert result["mean_cosine_positive"] == pytest.approx((0.96 + 0.8) / 2, abs=1e-6)
    assert result["mean_cosine_negative"] == pytest.approx((0.6 + 0.96) / 2, abs=1e-6)
    rates = {k: v["hit_rate"] for k, v in result["kind_hit_rate"].items()}
    assert rates == {"entity": 1.0, "number": 0.0, "reword": 1.0, "typo": 0.0}
    assert result["kind_hit_rate"]["reword"] == {"n": 1, "paraphrases": 1, "hit_rate": 1.0}


def test_cache_pair_scores_lower_threshold_and_no_hits() -> None:
    low = cache_pair_scores(_embed, PAIRS, 0.79)
    assert low["recall"] == pytest.approx(1.0)
    assert low["precision"] == pytest.approx(2 / 3)
    none = cache_pair_scores(_embed, PAIRS, 0.99)
    assert (none["precision"], none["recall"], none["f1"]) == (0.0, 0.0, 0.0)
