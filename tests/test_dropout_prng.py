"""`train.dropout_prng`: the dropout keys under jax.random's threefry2x32, rbg and unsafe_rbg
(training/step.py), driven by the jitted step on the tiny model (test_train.py's fixtures)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from test_train import base_config, make_epochs, model_config, run_steps, tiny_params

from gencls_jax import config_keys
from gencls_jax.errors import RunError
from gencls_jax.scoring.score import stack_params
from gencls_jax.training import optim
from gencls_jax.training import step as TS


def first_losses(impl: str, seed: int) -> tuple[np.ndarray, object]:
    """(the first step's nll, the state after it): one model, dropout 0.1, one batch, the tiny
    model's fresh params (the same for every seed); the first step's loss is read before its
    update, so it depends only on the dropout key of (`seed`, step 0)."""
    config = base_config(dropout_prng=impl)
    config.seed = seed
    mc = model_config(config, dropout=0.1)
    state, ms = run_steps(config, mc, tiny_params(mc), make_epochs(1, 1, 8)[0])
    return np.asarray(ms[0]["nll"]), state


def test_rbg_dropout_steps_are_finite_keyed_and_deterministic():
    """rbg (unsafe_rbg runs the same code with another name: its key shape is checked below)."""
    a, state = first_losses("rbg", 0)
    again, state_again = first_losses("rbg", 0)
    other, _ = first_losses("rbg", 1)
    assert np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, again)  # the same seed: the same masks, bit for bit
    jax.tree_util.tree_map(np.testing.assert_array_equal, state.params, state_again.params)
    # dropout is on: another seed's dropout key (the same params, rows) gives other masks
    assert not np.array_equal(a, other)
    assert state.rng.shape == (4,) and state.rng.dtype == np.uint32


def test_rbg_stacked_class_models_draw_their_own_masks():
    """Two identical class models (vmapped) on the same rows, dropout 0.1: their losses differ,
    each class its own masks (rbg's draws under vmap come from the first key's stream, sliced
    per class: XLA's RngBitGenerator batching rule)."""
    config = base_config(dropout_prng="rbg")
    config.model.conditioning = "per_class"
    mc = model_config(config, dropout=0.1)
    b = make_epochs(1, 1, 8)[0][0]
    batch = {k: np.stack([v, v]) for k, v in b.items()}
    params = stack_params([tiny_params(mc), tiny_params(mc)])
    _, ms = run_steps(config, mc, params, [batch], per_class=True)
    nll = np.asarray(ms[0]["nll"])
    assert nll.shape == (2,) and np.all(np.isfinite(nll)) and nll[0] != nll[1]


def test_dropout_key_shape_follows_the_prng():
    mc = model_config(base_config())
    shapes = {}
    for impl in TS.DROPOUT_PRNGS:
        tc = base_config(dropout_prng=impl).train
        state = TS.init_state(tiny_params(mc), optim.make_optimizer(tc), tc, 0, None)
        shapes[impl] = state.rng.shape
        assert state.rng.dtype == np.uint32
    assert shapes == {"threefry2x32": (2,), "rbg": (4,), "unsafe_rbg": (4,)}
    assert config_keys.defaults().train.dropout_prng == "threefry2x32"
    # the key shape is in the checkpoint: a resumed run keeps the PRNG
    assert config_keys.kind("train.dropout_prng") == config_keys.MODEL


def test_bad_dropout_prng_is_one_clear_line():
    tc = base_config(dropout_prng="philox").train
    msg = r"train.dropout_prng must be one of \('threefry2x32', 'rbg', 'unsafe_rbg'\), got 'philox'"
    with pytest.raises(RunError, match=msg):
        TS.dropout_prng(tc)
    with pytest.raises(RunError, match=msg):
        TS.init_state(
            tiny_params(model_config(base_config())), optim.make_optimizer(tc), tc, 0, None
        )
    # a state made under another PRNG
    with pytest.raises(RunError, match=r"dropout key has shape \(2,\).*'rbg' needs \(4,\)"):
        TS.dropout_key(np.zeros(2, np.uint32), "rbg")
