"""The training loop's host side (issue 25): per step it must not wait for the device beyond
the one-step-late metric fetch, and what it computes on the host is what the device computed."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gencls_jax import config_keys  # noqa: E402
from gencls_jax.training import hooks, objectives  # noqa: E402

OBJECTIVES = {
    "lm": objectives.LMObjective(stacked=False, packed=False),
    "decision": objectives.DecisionObjective(0.7, 1.3, (0.0, 0.0, 0.0), stacked=False),
}


def _log(tmp_path, objective) -> hooks.StepLog:
    config = config_keys.defaults()
    config.train.tensorboard = False
    return hooks.StepLog(tmp_path, config, objective, use_scale=False, lead=False)


def _sums(rng, zero: bool) -> dict:
    sums = {k: float(rng.uniform(0.0, 3000.0)) for k in hooks.SUMMED}
    if zero:  # an all-padding window: denominators 0, the loss 0
        sums.update(weight=0.0, texts=0.0, nll=0.0, ce=0.0)
    return sums


def _reference(name: str, s: dict) -> float:
    """float64 by hand: nll / weight (0 when no weight), the decision's weighted sum."""
    lm = s["nll"] / s["weight"] if s["weight"] > 0 else 0.0
    if name == "lm":
        return lm
    return 0.7 * lm + 1.3 * s["ce"] / max(s["texts"], 1.0)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_logged_loss_is_computed_on_the_host(tmp_path, name):
    """The log's per-step loss transfers nothing to the device (before: jnp ops on the host
    sums, queued behind the step in flight, so every step waited for the device), and is
    bit for bit the loss the jnp path computes, near a float64 reference."""
    objective, rng = OBJECTIVES[name], np.random.default_rng(0)
    log = _log(tmp_path, objective)
    for i in range(50):
        sums = _sums(rng, zero=i % 10 == 0)
        with jax.transfer_guard("disallow"):
            got = log.loss(sums)
        device = objective.losses({k: np.float32(v) for k, v in sums.items()})
        assert got == float(np.asarray(device).reshape(-1)[0])
        assert got == pytest.approx(_reference(name, sums), rel=1e-6, abs=1e-12)
