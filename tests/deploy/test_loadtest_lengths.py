"""The load test measures the lengths it names: the 512-token case is 512 tokens of the served tokenizer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from build_engines.paths import encoder_path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "loadtest"))
import perf_scenarios  # noqa: E402


def _tokenizers() -> list[Path]:
    served = ROOT / "model_repository" / "signals" / "1" / "tokenizer.json"
    return [p for p in (encoder_path() / "tokenizer.json", served) if p.exists()]


@pytest.mark.parametrize("tokenizer", _tokenizers(), ids=lambda p: p.parent.name)
def test_every_scenario_row_has_exactly_its_length(tokenizer: Path) -> None:
    for name, lengths, _ in perf_scenarios.scenarios():
        rows = perf_scenarios.token_rows(tokenizer, lengths)
        assert [len(r) for r in rows] == list(lengths), name
        assert all(r[0] == 101 and r[-1] == 102 for r in rows)
    (row,) = perf_scenarios.token_rows(tokenizer, (512,))
    assert len(row) == 512 and 100 not in row  # no [UNK]: real prompt tokens
