"""The fuzz run's short form (benchmarks/reliability/fuzz.py has the full one): a few hundred cases generated from
the router's OpenAPI document, valid and not, some mutated byte by byte, through Envoy, the direct proxy, the
classification API and the cache service, with the local LLM answering; every answer deliberate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.reliability.fuzz import Targets, run_fuzz
from local_stack.local_llm import LLM_VENV, find_local_llm
from tests.integration.conftest import RunningStack, start_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The default stack with the local LLM, every answer capped at 4 tokens so valid cases stay quick."""
    if find_local_llm() is None:
        pytest.skip(f"the local LLM is not installed in {LLM_VENV} (scripts/setup.sh installs it)")
    running = start_stack(Path(tmp_path_factory.mktemp("fuzz-stack")), local_llm=True, llm_max_tokens_cap=4)
    try:
        assert running.stack.llm is not None, running.stack.backend_note
        yield running
    finally:
        running.stack.down()


def test_generated_inputs_never_get_an_undocumented_5xx(fuzz_stack: RunningStack) -> None:
    stack = fuzz_stack
    targets = Targets(
        stack.envoy_url, stack.router_url, f"http://127.0.0.1:{stack.ports.cache}", stack.stack.admin_token
    )
    tally = run_fuzz(targets, inputs=300, seed=1)
    assert tally.total >= 300
    assert not tally.failures, tally.failures[:5]
    assert not stack.stack.dead()
    assert len(tally.sent) >= 10  # (nearly) every target got inputs
    by_mode = {
        mode: sum(n for kind, n in tally.kinds.items() if kind.split("+")[0] == mode)
        for mode in ("positive", "negative")
    }
    assert by_mode["positive"] >= 50 and by_mode["negative"] >= 50, tally.kinds  # valid and invalid, mutated or not
    answered = sum(v for k, v in tally.statuses.items() if k.startswith("chat via envoy 200"))
    assert answered >= 10  # valid cases reached the local LLM and got its answer
