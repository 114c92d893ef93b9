"""The fuzz run's short form (benchmarks/reliability/fuzz.py has the full one): a few hundred generated bodies
through Envoy, the direct proxy, the classification API and the cache service; every answer deliberate."""

from __future__ import annotations

import pytest

from benchmarks.reliability.fuzz import Targets, run_fuzz
from tests.integration.conftest import RunningStack

pytestmark = pytest.mark.integration


def test_generated_inputs_never_get_an_undocumented_5xx(stack: RunningStack) -> None:
    targets = Targets(
        stack.envoy_url, stack.router_url, f"http://127.0.0.1:{stack.ports.cache}", stack.stack.admin_token
    )
    tally = run_fuzz(targets, inputs=300, seed=1)
    assert tally.total >= 300
    assert not tally.failures, tally.failures[:5]
    assert not stack.stack.dead()
    assert len(tally.sent) >= 10  # every target got inputs
