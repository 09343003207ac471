"""The training engine on CPU with the tiny model: optimizer pieces, step equivalences, the loop.

Run as a script (`python tests/test_train.py OUT.npz`) it trains briefly and saves the
parameters: the multi-device test runs it in a subprocess with 8 emulated CPU devices.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gencls_jax import config_keys  # noqa: E402
from gencls_jax.errors import RunError  # noqa: E402
from gencls_jax.model import gpt2 as M  # noqa: E402
from gencls_jax.reports.logs import read_metrics  # noqa: E402
from gencls_jax.runs import load  # noqa: E402
from gencls_jax.runs.checkpoint import Checkpointer  # noqa: E402
from gencls_jax.scoring.score import stack_params  # noqa: E402
from gencls_jax.system import sharding  # noqa: E402
from gencls_jax.training import hooks, objectives, optim  # noqa: E402
from gencls_jax.training import loop as T  # noqa: E402
from gencls_jax.training import step as TS  # noqa: E402

VOCAB, SEQ = 64, 16


def base_config(**train_overrides):
    c = config_keys.defaults()
    c.model.size, c.model.dtype, c.model.dropout, c.model.conditioning = (
        "tiny",
        "float32",
        0.0,
        "label_prefix",
    )
    t = c.train
    t.epochs, t.batch_size, t.lr, t.warmup_steps, t.schedule = 2, 8, 3e-3, 2, "constant"
    # Adam moves a weight by ~lr * g / eps where |g| < eps: with eps = 1e-8, float noise in
    # near-zero gradients (e.g. the attention key bias, whose true gradient is exactly 0) becomes
    # update differences of ~1e-5 between equivalent computations
    # (vmap / lax.map / one model / 8 devices).
    t.eps = 1e-6
    t.log_every, t.ckpt_every, t.plot, t.tensorboard = 1, 0, False, False
    t.ckpt_every_s = 0.0  # every checkpoint point saves: these tests count checkpoints by step
    c.progress_bars = bool(train_overrides.pop("progress_bars", False))
    for k, v in train_overrides.items():
        setattr(t, k, v)
    return c


def train(config, *args, **kw):
    """`T.train` with the layout of the config's conditioning (K stacked models for per_class)."""
    return T.train(config, *args, stacked=config.model.conditioning == "per_class", **kw)


def model_config(config, **kw):
    base = M.config_for("tiny", vocab_size=VOCAB, n_positions=SEQ)
    return M.resolve_config(base, config.model).replace(**kw)


def make_batch(rng, rows, cls=0, pad=True):
    """Rows of the class-c pattern x_{t+1} = (x_t + c + 1) mod V, right-padded at random."""
    start = rng.integers(0, VOCAB, size=(rows, 1))
    seq = (start + (cls + 1) * np.arange(SEQ + 1)[None]) % VOCAB
    lengths = rng.integers(SEQ // 2, SEQ + 1, size=rows) if pad else np.full(rows, SEQ)
    real = np.arange(SEQ)[None] < lengths[:, None]
    return {
        "inputs": np.where(real, seq[:, :-1], 0).astype(np.int32),
        "targets": np.where(real, seq[:, 1:], 0).astype(np.int32),
        "weights": real.astype(np.float32),
        "positions": np.broadcast_to(np.arange(SEQ, dtype=np.int32), (rows, SEQ)).copy(),
        "segment_ids": real.astype(np.int32),
    }


def make_epochs(epochs, n, rows, classes=None, seed=0):
    """Fixed batches per epoch; classes=K gives [K, B, T] batches (class k's pattern)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(epochs):
        ep = []
        for _ in range(n):
            if classes is None:
                ep.append(make_batch(rng, rows))
            else:
                bs = [make_batch(rng, rows, c) for c in range(classes)]
                ep.append({k: np.stack([b[k] for b in bs]) for k in bs[0]})
        out.append(ep)
    return out


def batches_fn(data):
    return lambda epoch, start: iter(data[epoch][start:])


@functools.lru_cache(maxsize=None)
def _init(mc, seed):
    # jitted: op-by-op init is slow
    return to_np(jax.jit(M.init_params, static_argnums=0)(mc, seed))


def tiny_params(mc, classes=None, seed=0):
    """Fresh (never donated) float32 params; K stacked class models when classes=K."""
    if classes is None:
        return jax.tree_util.tree_map(jnp.asarray, _init(mc, seed))
    return stack_params([_init(mc, seed + c) for c in range(classes)])


def run_steps(config, mc, params, batches, per_class=False, loss_scale=None, state=None):
    """Drive the jitted step directly (no loop): returns final state and per-step metrics.
    Continues from `state` if given. Same settings -> one compilation (memoised)."""
    mesh = sharding.make_mesh()
    tc = ml_collections.FrozenConfigDict(config.train)
    objective = objectives.lm_objective(config, per_class)
    tx, step = TS.compiled_train_step(mc, tc, per_class, 100, mesh, objective)
    if state is None:
        k = TS.num_stacked_classes(params) if per_class else None
        # the step donates it
        params = jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), params)
        state = TS.init_state(params, tx, tc, config.seed, k)
        if loss_scale is not None:
            state = state._replace(
                loss_scale=state.loss_scale._replace(scale=jnp.float32(loss_scale))
            )
        state = jax.device_put(state, sharding.state_shardings(mesh, state, per_class))
    ms = []
    for b in batches:
        state, m = step(state, sharding.shard_batch(b, mesh))
        ms.append(jax.device_get(m))
    return state, ms


def to_np(tree):
    return jax.tree_util.tree_map(lambda x: np.array(x), jax.device_get(tree))


def assert_trees(fn, a, b):
    jax.tree_util.tree_map(fn, to_np(a), to_np(b))


# --- optimizer pieces -----------------------------------------------------------------------


def test_decay_mask_names_and_effect():
    mc = model_config(base_config())
    params = tiny_params(mc)
    mask = optim.decay_mask(params)
    flat = {
        "/".join(str(getattr(p, "key", p)) for p in path): v
        for path, v in jax.tree_util.tree_flatten_with_path(mask)[0]
    }
    decayed = sorted(k for k, v in flat.items() if v)
    assert decayed == [
        "h/attn/c_attn/kernel",
        "h/attn/c_proj/kernel",
        "h/mlp/c_fc/kernel",
        "h/mlp/c_proj/kernel",
    ]
    assert not flat["wte/embedding"] and not flat["wpe/embedding"] and not flat["h/ln_1/scale"]
    assert not flat["h/attn/c_attn/bias"] and not flat["ln_f/bias"]
    # With zero gradients AdamW only decays: masked leaves move by exactly -lr * wd * p.
    config = base_config(weight_decay=0.5, grad_clip=0.0)
    tx = optim.make_optimizer(config.train)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    updates, _ = jax.jit(functools.partial(tx.update, learning_rate=0.1))(
        zeros, tx.init(params), params
    )
    for path, u in jax.tree_util.tree_flatten_with_path(updates)[0]:
        name = "/".join(str(getattr(p, "key", p)) for p in path)
        p = np.asarray(flat_get(params, path))
        want = -0.1 * 0.5 * p if name in decayed else np.zeros_like(p)
        np.testing.assert_allclose(np.asarray(u), want, rtol=1e-6, atol=1e-9, err_msg=name)


def flat_get(tree, path):
    for p in path:
        tree = tree[p.key]
    return tree


def hand_layer_factor(path, leaf, decay, layers):
    """Layer-wise lr decay by hand: block i of L decay^(L-1-i), wte/wpe decay^L, the rest 1."""
    top = path[0].key if path[0].key != "body" else path[1].key
    if top == "h":
        return (decay ** (layers - 1 - np.arange(layers))).reshape(-1, *[1] * (leaf.ndim - 1))
    return decay**layers if top in ("wte", "wpe") else 1.0


def numpy_adamw(p, m, v, g, count, lr, t, factor):
    """One float64 AdamW update of a tree (optax's: clip by global norm, bias-corrected moments,
    decay on kernels), each leaf's update times `factor(path, leaf)`: (p, m, v) after it."""
    tm = jax.tree_util.tree_map
    norm = np.sqrt(sum(np.sum(x**2) for x in jax.tree_util.tree_leaves(g)))
    g = tm(lambda x: x * min(1.0, t.grad_clip / norm), g)
    m = tm(lambda a, x: t.b1 * a + (1 - t.b1) * x, m, g)
    v = tm(lambda a, x: t.b2 * a + (1 - t.b2) * x**2, v, g)

    def update(path, x, mo, ve):
        u = (mo / (1 - t.b1**count)) / (np.sqrt(ve / (1 - t.b2**count)) + t.eps)
        if path[-1].key == "kernel":
            u = u + t.weight_decay * x
        return x - lr * factor(path, x) * u

    return jax.tree_util.tree_map_with_path(update, p, m, v), m, v


def test_layer_lr_decay_matches_float64_adamw():
    """train.layer_lr_decay=0.5 on 2 layers, two stacked class models on schedules of their own
    (warmup 2 and 5 updates: the vmapped class axis): two steps equal a float64 NumPy AdamW
    whose update of each leaf is scaled by its layer's factor: block i by 0.5^(1-i), wte/wpe by
    0.5^2, ln_f by 1 (the gradients: each model's own, at the step's params)."""
    config = base_config(layer_lr_decay=0.5, warmup_steps=10, grad_clip=1.0, weight_decay=0.1)
    config.model.conditioning = "per_class"
    mc = model_config(config, dropout=0.0)
    tc, t = ml_collections.FrozenConfigDict(config.train), config.train
    mesh = sharding.make_mesh()
    totals, warmups = (20, 50), (2, 5)  # warmup = min(10, floor(0.1 x total))
    objective = objectives.lm_objective(config, True)
    tx, step = TS.compiled_train_step(mc, tc, True, totals, mesh, objective)
    params = tiny_params(mc, 2)
    state = TS.init_state(jax.tree_util.tree_map(jnp.array, params), tx, tc, 0, 2)
    one = objectives.lm_objective(config, False)
    grad = jax.jit(lambda p, b: TS.loss_grads(one, p, b, mc, None, jnp.float32(1), 1)[0])
    start = [jax.tree_util.tree_map(lambda x, c=c: np.float64(x[c]), to_np(params)) for c in (0, 1)]
    ref = [(p, *[jax.tree_util.tree_map(np.zeros_like, p)] * 2) for p in start]

    def factor(path, leaf):
        return hand_layer_factor(path, leaf, 0.5, mc.n_layer)

    for i, batch in enumerate(make_epochs(1, 2, 8, classes=2)[0]):
        now = to_np(state.params)
        for c in range(2):
            own = jax.tree_util.tree_map(lambda x: x[c], (now, batch))
            g = jax.tree_util.tree_map(np.float64, to_np(grad(*own)))
            lr = reference_lr(t.schedule, i, totals[c], warmups[c], t.lr, 0.0)
            ref[c] = numpy_adamw(*ref[c], g, i + 1, lr, t, factor)
        state, _ = step(state, sharding.shard_batch(batch, mesh))
    got = to_np(state.params)
    for c in range(2):
        for path, want in jax.tree_util.tree_leaves_with_path(ref[c][0]):
            p0, p1 = flat_get(start[c], path), np.asarray(flat_get(got, path))[c]
            # float32: the params' rounding, and Adam's step 2 where g_1 and g_2 nearly cancel
            atol = 3 * np.spacing(np.float32(np.abs(p0).max())) + 1e-4 * np.abs(want - p0).max()
            np.testing.assert_allclose(p1 - p0, want - p0, rtol=2e-4, atol=atol, err_msg=str(path))


def test_per_class_decision_trains_with_every_regulariser_on():
    """K = 2 stacked class models (vmapped) on the decision objective with layer-wise lr decay,
    label smoothing, adversarial training and the moving average all on: the loss falls over 6
    steps of one batch, every step finite, the average apart from the live weights. (The LM
    objective of stacked models with each lever: test_layer_lr_decay_matches_float64_adamw, and
    test_objectives.py's first-order test.)"""
    config = base_config(
        layer_lr_decay=0.7, adversarial_eps=0.05, adversarial_weight=0.5, ema_decay=0.9
    )
    config.model.conditioning = "per_class"
    config.train.objective, config.train.decision_label_smoothing = "decision", 0.1
    objectives.check_settings(config.train)
    mc = model_config(config, dropout=0.0)
    batch = make_epochs(1, 1, 8, classes=2)[0][0]
    batch = {k: np.stack([v[0], v[0]]) for k, v in batch.items()}  # every model reads every text
    batch["labels"] = np.zeros(8, np.int32)  # class 0's pattern
    obj = objectives.DecisionObjective(1.0, 1.0, (-0.69, -0.69), True, label_smoothing=0.1)
    tc = ml_collections.FrozenConfigDict(config.train)
    mesh = sharding.make_mesh()
    tx, step = TS.compiled_train_step(mc, tc, True, (6, 12), mesh, obj)
    state = TS.init_state(tiny_params(mc, 2), tx, tc, 0, 2)
    losses = []
    for _ in range(6):
        state, m = step(state, sharding.shard_batch(batch, mesh))
        m = jax.device_get(m)
        assert np.all(m["finite"]) and np.all(m["real"])
        losses.append(float(obj.losses({k: m[k] for k in ("nll", "weight", "ce", "texts")})[0]))
    assert losses[-1] < 0.8 * losses[0], losses
    avg, live = to_np(state.average), to_np(state.params)
    assert np.all(np.isfinite(avg["wte"]["embedding"]))
    assert not np.array_equal(avg["wte"]["embedding"], live["wte"]["embedding"])


def test_layer_lr_multipliers_of_a_discriminative_tree():
    """The {'body': GPT-2, 'head'} tree of the discriminative baseline: the head gets lr."""
    mc = model_config(base_config())
    body = tiny_params(mc)
    tree = {"body": body, "head": {"kernel": jnp.ones((64, 2)), "bias": jnp.ones((2,))}}
    got = optim.layer_lr_multipliers(tree, 0.8)
    for path, f in jax.tree_util.tree_leaves_with_path(got):
        want = hand_layer_factor(path, flat_get(tree, path), 0.8, 2)
        np.testing.assert_allclose(np.asarray(f), want, rtol=1e-7, err_msg=str(path))
    assert float(got["head"]["kernel"]) == 1.0 and float(
        got["body"]["wte"]["embedding"]
    ) == np.float32(0.8**2)


def reference_lr(kind, t, total, warmup, peak, end_factor):
    """Closed form of the schedule in float64: warmup step t of W gets peak*(t+1)/W; after it the
    decay has progress p = (t - W + 1) / (T - W + 1), which stays below 1 on the last step."""
    if t < warmup:
        return peak * (t + 1) / warmup
    p = (t - warmup + 1) / (total - warmup + 1)
    end = peak * end_factor
    return {
        "constant": peak,
        "linear": peak + (end - peak) * p,
        "cosine": end + (peak - end) * 0.5 * (1 + np.cos(np.pi * p)),
    }[kind]


@pytest.mark.parametrize("kind", ["constant", "linear", "cosine"])
def test_schedule_values(kind):
    config = base_config(
        schedule=kind, lr=1.0, warmup_steps=4, warmup_max_fraction=0.5, end_lr_factor=0.1
    )
    for total, warmup in ((24, 4), (6, 3), (1, 1)):  # warmup: min(4, max(1, floor(0.5 * total)))
        assert optim.warmup_length(config.train, total) == warmup
        s = optim.make_schedule(config.train, total)
        got = np.array([float(s(t)) for t in range(total)])
        want = np.array([reference_lr(kind, t, total, warmup, 1.0, 0.1) for t in range(total)])
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=f"total={total}")
    s = optim.make_schedule(config.train, 24)
    assert float(s(0)) == 0.25 and float(s(3)) == 1.0  # warmup reaches the peak on its last step


def test_warmup_length_rule():
    """warmup = min(train.warmup_steps, max(1, floor(train.warmup_max_fraction * total)));
    0 = off."""
    tc = base_config(warmup_steps=100, warmup_max_fraction=0.1).train
    assert [optim.warmup_length(tc, n) for n in (1, 2, 9, 10, 35, 999, 1000, 5000)] == [
        1,
        1,
        1,
        1,
        3,
        99,
        100,
        100,
    ]
    assert optim.warmup_length(base_config(warmup_steps=0).train, 50) == 0
    with pytest.raises(ValueError, match="warmup_max_fraction"):
        optim.warmup_length(base_config(warmup_max_fraction=1.5).train, 10)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_every_step_has_a_positive_lr(kind):
    """Even with end_lr_factor 0, one-step runs and the last step of a long run (float32) train."""
    for warmup in (0, 1, 100):
        tc = base_config(schedule=kind, lr=5e-5, warmup_steps=warmup, end_lr_factor=0.0).train
        for total in (1, 2, 3, 7, 50, 200_000):
            s = jax.jit(optim.make_schedule(tc, total))
            steps = np.r_[np.arange(min(total, 60)), np.arange(max(total - 60, 0), total)]
            lrs = np.array([float(s(t)) for t in steps])
            assert np.all(lrs > 0), (warmup, total, lrs.min())


def test_loss_sums_match_numpy():
    config = base_config()
    mc = model_config(config)
    params = tiny_params(mc)
    b = make_batch(np.random.default_rng(0), 4)
    sums = jax.jit(objectives.LMObjective(stacked=False, packed=True).sums, static_argnums=2)
    out = sums(params, b, mc, None)
    nll, w = out["nll"][0], out["weight"][0]
    logits = np.asarray(
        jax.jit(M.apply, static_argnums=2)(
            params, b["inputs"], mc, b["positions"], b["segment_ids"]
        ),
        np.float64,
    )
    logp = (
        logits
        - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
        - logits.max(-1, keepdims=True)
    )
    ref = -(np.take_along_axis(logp, b["targets"][..., None], -1)[..., 0] * b["weights"]).sum()
    assert abs(float(nll) - ref) < 1e-3 and float(w) == b["weights"].sum()


# --- step equivalences ----------------------------------------------------------------------


def test_grad_accum_equals_big_batch():
    rng = np.random.default_rng(1)
    batches = [make_batch(rng, 16) for _ in range(3)]
    outs = []
    for accum in (1, 4):
        config = base_config(grad_accum=accum)
        mc = model_config(config)
        state, ms = run_steps(config, mc, tiny_params(mc), batches)
        outs.append((state, [float(np.sum(m["nll"])) for m in ms]))
    np.testing.assert_allclose(outs[0][1], outs[1][1], rtol=1e-5)
    assert_trees(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        outs[0][0].params,
        outs[1][0].params,
    )
    # ... and it trained: a step moved the parameters.
    p0 = tiny_params(model_config(base_config()))
    assert not np.allclose(
        np.asarray(p0["wte"]["embedding"]), np.asarray(outs[1][0].params["wte"]["embedding"])
    )


def assert_models_close(a, b):
    assert_trees(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)


def test_per_class_equals_separate_models_and_lax_map():
    """Stacked (vmap) K=2 training == each class model trained alone == lax.map fallback."""
    data = make_epochs(1, 2, 8, classes=2)[0]
    config = base_config()
    config.model.conditioning = "per_class"
    mc = model_config(config, dropout=0.0)
    stacked, _ = run_steps(config, mc, tiny_params(mc, 2), data, per_class=True)
    config.train.stack_classes = False
    looped, _ = run_steps(config, mc, tiny_params(mc, 2), data, per_class=True)
    assert_models_close(stacked.params, looped.params)
    for c in range(2):
        alone, _ = run_steps(
            config, mc, tiny_params(mc, seed=c), [{k: v[c] for k, v in b.items()} for b in data]
        )
        assert_models_close(jax.tree_util.tree_map(lambda x: x[c], stacked.params), alone.params)


def test_each_class_model_is_clipped_by_its_own_norm():
    """train.grad_clip applies to each class model's own gradient norm: stacked K=2 == each
    model alone over 4 clipped steps (every norm far above the clip, the classes' norms apart),
    and each class's logged norm is the norm of its own gradient."""
    config = base_config(grad_clip=0.05)
    config.model.conditioning = "per_class"
    mc = model_config(config, dropout=0.0)
    data = make_epochs(1, 4, 8, classes=2)[0]
    stacked, ms = run_steps(config, mc, tiny_params(mc, 2), data, per_class=True)
    norms = np.asarray([m["grad_norm"] for m in ms])  # [steps, K]
    assert np.all(norms > 20 * 0.05) and not np.allclose(norms[:, 0], norms[:, 1]), norms
    for c in range(2):
        alone, alone_ms = run_steps(
            config, mc, tiny_params(mc, seed=c), [{k: v[c] for k, v in b.items()} for b in data]
        )
        assert_models_close(jax.tree_util.tree_map(lambda x: x[c], stacked.params), alone.params)
        np.testing.assert_allclose(norms[:, c], [m["grad_norm"] for m in alone_ms], rtol=1e-5)


def test_each_class_model_has_its_own_loss_scale_and_skipped_steps():
    """float16, K=2 stacked: an overflow in class 1's batch skips class 1's update, halves its
    loss scale and counts its skipped step; class 0 takes the step as if alone, its scale
    untouched by the other's overflow."""
    config = base_config(
        loss_scale=2.0**10, loss_scale_period=100, loss_scale_factor=2.0, loss_scale_min=1.0
    )
    config.model.conditioning = "per_class"
    config.model.dtype = "float16"
    mc = model_config(config)
    data = make_epochs(1, 1, 8, classes=2)[0]
    bad = {k: v.copy() for k, v in data[0].items()}
    bad["weights"][1] = poisoned({k: v[1] for k, v in data[0].items()})["weights"]  # class 1 only
    params = tiny_params(mc, 2)
    state, ms = run_steps(config, mc, params, [bad], per_class=True)
    assert list(np.asarray(ms[0]["finite"])) == [True, False]
    assert np.asarray(state.skipped).tolist() == [0, 1]
    assert np.asarray(state.loss_scale.scale).tolist() == [2.0**10, 2.0**9]
    assert_trees(
        np.testing.assert_array_equal,
        jax.tree_util.tree_map(lambda x: np.asarray(x)[1], params),
        jax.tree_util.tree_map(lambda x: np.asarray(x)[1], state.params),
    )
    alone, _ = run_steps(config, mc, tiny_params(mc, seed=0), [{k: v[0] for k, v in bad.items()}])
    assert_models_close(jax.tree_util.tree_map(lambda x: x[0], state.params), alone.params)


def test_empty_class_step_changes_nothing():
    """A class with no real tokens in a step (weight 0 everywhere) keeps its params, optimizer
    state (so its schedule does not advance) and loss scale bit for bit; the other class trains."""
    for dtype in ("float32", "float16"):
        config = base_config(weight_decay=0.1)
        config.model.conditioning, config.model.dtype = "per_class", dtype
        mc = model_config(config, dropout=0.0)
        data = make_epochs(1, 2, 8, classes=2)[0]
        state, _ = run_steps(config, mc, tiny_params(mc, 2), data[:1], per_class=True)
        before = to_np(state)
        empty = {k: v.copy() for k, v in data[1].items()}
        empty["weights"][1] = 0.0  # class 1: padding only
        state, ms = run_steps(config, mc, None, [empty], per_class=True, state=state)
        after = to_np(state)
        for field in ("params", "opt_state", "loss_scale", "skipped"):
            assert_trees(
                np.testing.assert_array_equal,
                jax.tree_util.tree_map(lambda x: x[1], getattr(before, field)),
                jax.tree_util.tree_map(lambda x: x[1], getattr(after, field)),
            )
        assert not np.array_equal(
            before.params["wte"]["embedding"][0], after.params["wte"]["embedding"][0]
        )
        assert list(ms[0]["real"]) == [True, False]


# --- the moving average of the parameters (train.ema_decay) ----------------------------------


def test_moving_average_matches_float64_recurrence():
    """Two class models, three steps, class 1 without a real token in the second: each model's
    average is the float64 recurrence over its own applied updates, decay_t = min(d, (1 + t) /
    (10 + t)), from its init; the live parameters are those of a run without the average."""
    d = 0.7
    data = make_epochs(1, 3, 8, classes=2)[0]
    data[1] = {k: v.copy() for k, v in data[1].items()}
    data[1]["weights"][1] = 0.0  # class 1: padding only, no update
    runs = {}
    for decay in (0.0, d):
        config = base_config(ema_decay=decay)
        config.model.conditioning = "per_class"
        mc = model_config(config)
        init = to_np(tiny_params(mc, 2))
        state, seen = None, []
        for b in data:
            state, _ = run_steps(config, mc, tiny_params(mc, 2), [b], True, state=state)
            seen.append(to_np(state.params))
        runs[decay] = state, seen
    state, seen = runs[d]
    assert runs[0.0][0].average is None
    assert_trees(np.testing.assert_array_equal, runs[0.0][0].params, state.params)
    for c in range(2):
        ref = jax.tree_util.tree_map(lambda x: np.float64(x[c]), init)
        t = 0
        for i, after in enumerate(seen):
            if c == 1 and i == 1:
                continue  # no update applied: the average stays
            t += 1
            dt = min(d, (1 + t) / (10 + t))
            ref = jax.tree_util.tree_map(lambda a, p: dt * a + (1 - dt) * p[c], ref, after)
        got = jax.tree_util.tree_map(lambda x: np.asarray(x)[c], to_np(state.average))
        jax.tree_util.tree_map(
            lambda g, r: np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6), got, ref
        )
    moved = to_np(state.average)["wte"]["embedding"] - init["wte"]["embedding"]
    assert np.abs(moved).max() > 0  # the test would pass on a frozen average otherwise


def test_a_run_is_validated_and_loaded_on_its_average(tmp_path):
    """With the average on, validation sees it (not the live weights), and loading the run's
    best checkpoint gives the average at that step."""
    config = base_config(epochs=2, ema_decay=0.9, keep_checkpoints=1, best_metric="val_loss")
    mc = model_config(config)
    seen = []

    def val(params):
        seen.append(to_np(params))
        return {"val_loss": float(len(seen))}  # best: the first epoch

    res = train(config, tmp_path, mc, tiny_params(mc), batches_fn(make_epochs(2, 3, 8)), 3, val)
    assert_trees(np.testing.assert_array_equal, seen[-1], res.state.average)
    assert_trees(np.testing.assert_array_equal, res.params, res.state.average)
    assert not np.array_equal(
        to_np(res.state.average)["wte"]["embedding"], to_np(res.state.params)["wte"]["embedding"]
    )
    params, step, _ = load.restore_params(tmp_path, tiny_params(mc), "best")
    assert step == 3
    assert_trees(np.testing.assert_array_equal, params, seen[0])


def test_ema_decay_out_of_range_is_one_line():
    for bad in (1.0, -0.1, "0.9", True):
        with pytest.raises(RunError, match=r"train.ema_decay must be a number in \[0, 1\)"):
            TS.ema_decay(ml_collections.ConfigDict({"ema_decay": bad}))


def test_one_step_run_trains(tmp_path):
    """A run of a single optimizer step (warmup_steps far above it) still moves the parameters."""
    config = base_config(epochs=1, warmup_steps=100, schedule="cosine", end_lr_factor=0.0)
    mc = model_config(config)
    params = tiny_params(mc)
    res = train(config, tmp_path, mc, params, batches_fn(make_epochs(1, 1, 8)), 1)
    assert res.step == 1 and res.history[0]["lr"] == pytest.approx(config.train.lr)
    assert not np.allclose(
        np.asarray(params["wte"]["embedding"]), np.asarray(res.params["wte"]["embedding"])
    )


BOS_ID = VOCAB - 1  # also EOS: the tiny rows' token ids stay inside the tiny vocabulary


def class_streams(sizes, batch_size, seed=0):
    """Per-class TrainStreams of random texts (ids < VOCAB - 1, rows <= SEQ tokens), 'pad'
    batches."""
    from gencls_jax.data.batching import BatchSpec, TrainStream
    from gencls_jax.data.rows import make_rows

    rng = np.random.default_rng(seed)
    out = []
    for k, n in enumerate(sizes):
        texts = [
            rng.integers(0, VOCAB - 1, rng.integers(3, SEQ)).astype(np.int32) for _ in range(n)
        ]
        rows = make_rows(texts, SEQ, BOS_ID, "error", SEQ, eos_id=BOS_ID)
        out.append(TrainStream(rows, BatchSpec("pad", batch_size, SEQ, ()), seed=3, stream=k))
    return tuple(out)


def test_imbalanced_classes_train_as_if_alone(tmp_path):
    """3 classes of 3 / 10 / 21 texts, 2 epochs, cosine with warmup: each class model of the stacked
    run (vmap, and lax.map) equals that model fine-tuned alone on its own batches, with its own
    schedule over its own 2 / 6 / 12 steps."""
    from gencls_jax.data.batching import PerClassStream

    streams = class_streams((3, 10, 21), batch_size=4)
    pc = PerClassStream(streams)
    assert [pc.steps_per_model(e) for e in (0, 1)] == [(1, 3, 6)] * 2
    config = base_config(
        epochs=2,
        lr=1e-2,
        schedule="cosine",
        warmup_steps=3,
        warmup_max_fraction=0.25,
        end_lr_factor=0.0,
    )
    config.data.batching = "pad"
    config.model.conditioning = "per_class"
    mc = model_config(config, dropout=0.0)
    stacked = train(
        config, tmp_path / "vmap", mc, tiny_params(mc, 3), pc.batches, pc.steps_per_model
    )
    assert stacked.step == 12
    config.train.stack_classes = False
    looped = train(config, tmp_path / "map", mc, tiny_params(mc, 3), pc.batches, pc.steps_per_model)
    assert_models_close(stacked.params, looped.params)
    alone_config = config.copy_and_resolve_references()
    alone_config.model.conditioning = "label_prefix"  # one model, [B, T] batches
    for k, stream in enumerate(streams):
        alone = train(
            alone_config,
            tmp_path / f"alone{k}",
            mc,
            tiny_params(mc, seed=k),
            stream.batches,
            stream.num_batches,
        )
        assert alone.step == 2 * stream.num_batches(0)
        assert_models_close(jax.tree_util.tree_map(lambda x: x[k], stacked.params), alone.params)
        n_updates = int(
            optax.tree_utils.tree_get(
                jax.tree_util.tree_map(lambda x: x[k], stacked.state.opt_state), "count"
            )
        )
        assert n_updates == alone.step  # the small class's schedule advanced on its real steps only


def test_validation_loss_counts_each_text_once():
    """Imbalanced validation classes (2 / 7 / 13 texts): the per-class validation loss equals the
    token-weighted mean nll over every validation text once, each scored by its class's model."""
    from gencls_jax.data.batching import PerClassStream

    streams = class_streams((2, 7, 13), batch_size=4, seed=1)
    config = base_config()
    config.data.batching = "pad"
    config.model.conditioning = "per_class"
    mc = model_config(config, dropout=0.0)
    params = tiny_params(mc, 3)
    pc = PerClassStream(streams)
    got = T.make_loss_evaluator(config, mc, lambda: pc.batches(0), stacked=True)(params)["val_loss"]
    nll = weight = 0.0
    apply = jax.jit(M.apply, static_argnums=2)
    for k, stream in enumerate(streams):
        pk = jax.tree_util.tree_map(lambda x: x[k], params)
        for x, y, w in zip(stream.rows.inputs, stream.rows.targets, stream.rows.weights):
            logits = np.asarray(apply(pk, np.asarray(x)[None], mc), np.float64)[0]
            logp = logits - logits.max(-1, keepdims=True)
            logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
            nll -= float(np.sum(np.take_along_axis(logp, np.asarray(y)[:, None], -1)[:, 0] * w))
            weight += float(np.sum(w))
    assert got == pytest.approx(nll / weight, rel=1e-5)


# --- float16 loss scaling -------------------------------------------------------------------


def poisoned(b):
    """A batch whose loss is NaN: the injected overflow."""
    b = {k: v.copy() for k, v in b.items()}
    b["weights"][0, 0] = np.nan
    return b


def test_float16_loss_scaling_skips_and_recovers():
    config = base_config(
        loss_scale=2.0**10, loss_scale_period=2, loss_scale_factor=2.0, loss_scale_min=1.0
    )
    config.model.dtype = "float16"
    mc = model_config(config)
    rng = np.random.default_rng(2)
    good = [make_batch(rng, 8) for _ in range(5)]
    state, ms = run_steps(config, mc, tiny_params(mc), good[:2])
    assert float(state.loss_scale.scale) == 2.0**11  # two good steps -> doubled
    before = to_np(state.params)
    state, ms = run_steps(config, mc, None, [poisoned(good[2])], state=state)
    assert not ms[-1]["finite"] and int(state.skipped) == 1
    assert float(state.loss_scale.scale) == 2.0**10  # halved
    assert_trees(np.testing.assert_array_equal, before, state.params)  # update skipped
    state, ms = run_steps(config, mc, None, good[3:5], state=state)
    assert all(m["finite"] for m in ms) and np.isfinite(float(np.sum(ms[-1]["nll"])))
    assert not np.array_equal(
        before["wte"]["embedding"], np.asarray(state.params["wte"]["embedding"])
    )
    assert float(state.loss_scale.scale) == 2.0**11 and int(state.skipped) == 1


def test_float16_genuine_overflow_is_skipped():
    config = base_config(
        loss_scale=2.0**10, loss_scale_period=2, loss_scale_factor=2.0, loss_scale_min=1.0
    )
    config.model.dtype = "float16"
    mc = model_config(config)
    params = tiny_params(mc)
    state, ms = run_steps(
        config, mc, params, [make_batch(np.random.default_rng(3), 8)], loss_scale=2.0**127
    )
    assert (
        not ms[0]["finite"]
        and float(state.loss_scale.scale) == 2.0**126
        and int(state.skipped) == 1
    )
    assert_trees(np.testing.assert_array_equal, params, state.params)


def test_nonfinite_loss_raises_without_loss_scaling(tmp_path):
    config = base_config()
    mc = model_config(config)
    data = make_epochs(1, 4, 8)
    data[0][2] = poisoned(data[0][2])
    with pytest.raises(FloatingPointError, match="non-finite loss at step 3"):
        train(config, tmp_path, mc, tiny_params(mc), batches_fn(data), 4)


# --- the loop ---------------------------------------------------------------------------------


def val_evaluator(config, mc, classes=None):
    val = make_epochs(1, 2, 8, classes=classes, seed=99)[0]
    return T.make_loss_evaluator(
        config, mc, lambda: iter(val), stacked=config.model.conditioning == "per_class"
    )


def test_label_prefix_learns_and_writes_outputs(tmp_path):
    config = base_config(epochs=3, progress_bars=True, plot=True, log_every=2)
    mc = model_config(config, dropout=0.1)
    data = make_epochs(3, 6, 8)
    res = train(
        config, tmp_path, mc, tiny_params(mc), batches_fn(data), 6, val_evaluator(config, mc)
    )
    assert res.stop_reason == "completed" and res.step == 18 and res.epoch == 3
    losses = [h["loss"] for h in res.history]
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3]), losses
    assert res.evals[-1]["val_loss"] < res.evals[0]["val_loss"]
    recs = read_metrics(tmp_path / "metrics.jsonl")
    train_recs = [r for r in recs if r["kind"] == "train"]
    assert [r["step"] for r in train_recs] == list(range(2, 19, 2))
    assert {"train_loss", "lr", "tokens_per_s", "steps_per_s", "skipped_steps"} <= set(
        train_recs[0]
    )
    assert len([r for r in recs if r["kind"] == "eval"]) == 3
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert json.loads((tmp_path / "config.json").read_text())["train"]["epochs"] == 3
    # A second call with the same workdir finds the run complete and does nothing.
    again = train(config, tmp_path, mc, tiny_params(mc), batches_fn(data), 6)
    assert again.step == 18 and again.history == []


def test_per_class_learns(tmp_path):
    config = base_config(epochs=2, lr=1e-2)
    config.model.conditioning = "per_class"
    mc = model_config(config)
    data = make_epochs(2, 6, 8, classes=2)
    res = train(config, tmp_path, mc, tiny_params(mc, 2), batches_fn(data), 6)
    losses = [h["loss"] for h in res.history]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    # Each class model learned its own pattern: model c scores class c's data better.
    ev = TS.make_eval_step(mc, objectives.LMObjective(stacked=True, packed=True))
    b0 = make_batch(np.random.default_rng(5), 8, cls=0)
    nll = ev(res.params, {k: np.stack([v, v]) for k, v in b0.items()})["nll"]
    assert float(nll[0]) < float(nll[1])


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_is_bit_exact(tmp_path, ema_decay):
    """Interrupted by SIGINT and resumed == uninterrupted (params, their moving average when on,
    and losses). The signal comes while step 5's metrics are handled, step 6 is in flight:
    training stops after step 6."""
    config = base_config(epochs=2, ckpt_every=3, keep_checkpoints=1, ema_decay=ema_decay)
    mc = model_config(config, dropout=0.1)  # dropout on: its keys must replay exactly
    data = make_epochs(2, 4, 8)
    full = train(config, tmp_path / "full", mc, tiny_params(mc), batches_fn(data), 4)

    def interrupt(step, _rec):
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    part = train(
        config, tmp_path / "part", mc, tiny_params(mc), batches_fn(data), 4, callbacks=[interrupt]
    )
    assert (
        part.stop_reason == "interrupted"
        and part.step == 6
        and (part.epoch, len(part.history)) == (1, 6)
    )
    assert Checkpointer(tmp_path / "part" / "checkpoints", 1, "").latest_step() == 6
    rest = train(config, tmp_path / "part", mc, tiny_params(mc), batches_fn(data), 4)
    assert rest.stop_reason == "completed" and rest.step == 8
    assert [h["loss"] for h in part.history + rest.history] == [h["loss"] for h in full.history]
    assert_trees(np.testing.assert_array_equal, full.state.params, rest.state.params)
    assert_trees(np.testing.assert_array_equal, full.state.opt_state, rest.state.opt_state)
    assert (full.state.average is None) == (ema_decay == 0)
    assert_trees(np.testing.assert_array_equal, full.state.average, rest.state.average)
    logged = [
        r["train_loss"]
        for r in read_metrics(tmp_path / "part" / "metrics.jsonl")
        if r["kind"] == "train"
    ]
    assert logged == [
        r["train_loss"]
        for r in read_metrics(tmp_path / "full" / "metrics.jsonl")
        if r["kind"] == "train"
    ]


def test_checkpoints_within_ckpt_every_s_are_skipped_but_not_the_best_nor_the_end(tmp_path):
    """`train.ckpt_every_s`: within it of the last save, a checkpoint point (here every step)
    saves nothing, except a new best and the run's end; the trained result is the same as with
    a save at every point (0)."""
    data = make_epochs(3, 4, 8)
    fake = [2.0, 2.5, 1.0]  # validation at steps 4 (best), 8 (worse), 12 (best, the end)
    results, steps = {}, {}
    for every_s in (0.0, 3600.0):
        config = base_config(epochs=3, ckpt_every=1, keep_checkpoints=50, best_metric="val_loss")
        config.train.ckpt_every_s = every_s
        mc = model_config(config)
        vals = iter(fake)
        wd = tmp_path / str(every_s)
        results[every_s] = train(
            config, wd, mc, tiny_params(mc), batches_fn(data), 4, lambda p: {"val_loss": next(vals)}
        )
        steps[every_s] = Checkpointer(wd / "checkpoints", 50, "val_loss").all_steps()
    assert steps[0.0] == list(range(1, 13))
    assert steps[3600.0] == [4, 12]  # step 8's epoch end and every mid-epoch point skipped
    assert results[3600.0].best_step == 12 and results[3600.0].stop_reason == "completed"
    assert_trees(
        np.testing.assert_array_equal, results[0.0].state.params, results[3600.0].state.params
    )


def test_negative_ckpt_every_s_is_one_line(tmp_path):
    config = base_config()
    config.train.ckpt_every_s = -1.0
    with pytest.raises(RunError, match=r"train.ckpt_every_s must be >= 0 seconds, got -1.0"):
        hooks.Checkpoints(tmp_path, config.train)


def test_early_stopping_and_best_checkpoint_kept(tmp_path):
    config = base_config(
        epochs=10, early_stop_patience=2, keep_checkpoints=1, best_metric="val_loss"
    )
    mc = model_config(config)
    data = make_epochs(10, 2, 8)
    fake = iter([3.0, 2.0, 2.5, 2.1, 1.0])  # best at epoch 1, then two epochs without improvement

    res = train(
        config,
        tmp_path,
        mc,
        tiny_params(mc),
        batches_fn(data),
        2,
        lambda p: {"val_loss": next(fake)},
    )
    assert res.stop_reason == "early_stop" and res.epoch == 4 and res.step == 8
    assert (res.best, res.best_step) == (2.0, 4)
    steps = Checkpointer(tmp_path / "checkpoints", 1, "val_loss").all_steps()
    assert steps == [4, 8], steps  # the best (step 4) and the latest


def run_for_devices(out: str) -> None:
    """Two short runs (label_prefix with accumulation, per_class) on all devices -> npz."""
    import tempfile

    arrays = {"n_devices": np.asarray(jax.device_count())}
    for mode, classes in (("label_prefix", None), ("per_class", 2)):
        config = base_config(epochs=1, grad_accum=2, batch_size=16)
        config.model.conditioning = mode
        mc = model_config(config, dropout=0.0)
        data = make_epochs(1, 2, 16, classes=classes, seed=7)
        with tempfile.TemporaryDirectory() as d:
            res = train(config, d, mc, tiny_params(mc, classes), batches_fn(data), 2)
        for path, x in jax.tree_util.tree_flatten_with_path(to_np(res.params))[0]:
            arrays[mode + "/" + "/".join(str(getattr(p, "key", p)) for p in path)] = x
    np.savez(out, **arrays)


def test_eight_devices_match_one(tmp_path):
    assert_eight_devices_match_one(__file__, tmp_path)


@functools.cache
def one_device_reference() -> dict[str, np.ndarray]:
    """run_for_devices on this process's one device, as it is in this module (one update per
    call): computed once, the reference of every 8-device test."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        run_for_devices(f"{d}/one.npz")
        return dict(np.load(f"{d}/one.npz"))


def assert_eight_devices_match_one(script: str, tmp_path) -> None:
    """`script` run on 8 emulated devices (its __main__ writes run_for_devices' npz) equals
    run_for_devices on this process's one device."""
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
    }
    eight = subprocess.Popen(
        [sys.executable, script, str(tmp_path / "eight.npz")], env=env, cwd=REPO
    )
    try:
        one = one_device_reference()  # meanwhile, the 1-device reference here (or its copy)
        assert eight.wait(timeout=300) == 0
    finally:
        eight.kill()
    eight = np.load(tmp_path / "eight.npz")
    assert int(one["n_devices"]) == 1 and int(eight["n_devices"]) == 8
    assert set(one) == set(eight.files)
    for k in sorted(set(one) - {"n_devices"}):
        np.testing.assert_allclose(one[k], eight[k], rtol=1e-5, atol=1e-5, err_msg=k)


if __name__ == "__main__":
    run_for_devices(sys.argv[1])


def test_one_program_serves_other_totals_priors_lr_and_lambda():
    """The run's numbers that are not shapes (each model's total and warmup updates, the lr, the
    class prior, lambda) are arguments of the compiled step, not constants in it: two runs that
    differ in all of them lower to the same program (the persistent cache's key), and each
    still trains on its own numbers (the lr it reports is its schedule's, the loss its prior's
    and lambda's). Catches: a constant traced back in (the warm cache missed on another
    training split, BUILD_NOTES "A warm cache that misses")."""
    config = base_config(schedule="cosine", warmup_steps=3)
    config.model.conditioning = "per_class"
    config.train.objective = "decision"
    mc = model_config(config, dropout=0.0)
    batch = make_epochs(1, 1, 8, classes=2)[0][0]
    batch = {k: np.stack([v[0], v[0]]) for k, v in batch.items()}
    batch["labels"] = np.asarray([0, 1] * 4, np.int32)
    mesh = sharding.make_mesh()
    runs = []
    for lr, totals, prior, lam in (
        (3e-3, (6, 12), (-0.69, -0.69), 1.0),
        (1e-3, (40, 9), (-0.2, -1.7), 0.5),
    ):
        config.train.lr = lr
        tc = ml_collections.FrozenConfigDict(config.train)
        obj = objectives.DecisionObjective(1.0, lam, prior, True)
        tx, step = TS.compiled_train_step(mc, tc, True, totals, mesh, obj)
        state = TS.init_state(tiny_params(mc, 2), tx, tc, 0, 2)
        sharded = sharding.shard_batch(batch, mesh)
        text = step.lower(state, sharded).as_text()
        _, m = step(state, sharded)
        runs.append((text, jax.device_get(m), tc, totals, obj))
    assert runs[0][0] == runs[1][0]
    for _, m, tc, totals, obj in runs:
        want = [float(optim.make_schedule(tc, n)(0)) for n in totals]  # the first update's lr
        np.testing.assert_allclose(m["lr"], want, rtol=1e-6)
    # same params and batch, another prior and lambda: another decision loss
    assert not np.allclose(runs[0][1]["ce"], runs[1][1]["ce"])
