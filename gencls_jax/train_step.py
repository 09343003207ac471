"""The train step as a pure function, and what it needs around it: state, gradient
accumulation, the jitted data-parallel step, the validation-loss step, device placement.

- One step function for both layouts. One model trains on [B, T] batches; K class models
  stacked on a leading class axis (params, optimizer state, loss scale and the [K, B, T] batch)
  train with `jax.vmap` (or `lax.map`, one class after another, when
  `train.stack_classes=False` and K models' activations don't fit at once).
- Data parallel over the mesh's 'data' axis (`sharding.py`): the batch is sharded on its row
  axis B, each process feeding its own rows; the state is replicated over 'data' (class models
  split over 'class' when `train.class_shards` > 1), and XLA inserts the gradient all-reduce.
- Gradient accumulation runs inside the step (`lax.scan` over micro-batches); the loss is
  normalised by the total weight of the whole batch, so A micro-batches of B rows equal one
  batch of A*B rows up to float rounding.
- Dropout keys are fold_in(seed, step, class, micro-batch): resuming replays them exactly.
- float16 (`model.dtype`): dynamic loss scaling; a step with non-finite grads is skipped.
- Unequal class sizes: a class model whose batch has no real token (its own epoch is over)
  takes no update, and each class model follows its own learning-rate schedule over its own
  updates (`optim.make_schedule`), exactly as if it were fine-tuned alone.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from gencls_jax import optim, sharding
from gencls_jax.model import GPT2Config
from gencls_jax.objectives import JointObjective, LossFn, token_loss_sums

Array = jax.Array
Batch = Mapping[str, Any]


# --- state ----------------------------------------------------------------------------------


class TrainState(NamedTuple):
    """Everything a resumed run needs besides the data position. With per-class training every
    field but `step` and `rng` has a leading class axis."""

    step: Array  # int32 scalar: optimizer steps taken (including skipped ones)
    params: Any
    opt_state: Any
    loss_scale: optim.LossScale
    skipped: Array  # int32: steps skipped for non-finite grads (float16 loss scaling)
    rng: Array  # uint32 key data of the dropout base key


def init_state(
    params: Any, tx: optax.GradientTransformation, tc: Any, seed: int, num_classes: int | None
) -> TrainState:
    """Fresh state. `num_classes` = K for class-stacked params, None for one model."""
    if num_classes is None:
        opt_state, ls, skipped = (
            tx.init(params),
            optim.init_loss_scale(tc),
            jnp.zeros((), jnp.int32),
        )
    else:
        opt_state = jax.vmap(tx.init)(params)
        ls = jax.tree_util.tree_map(
            lambda x: jnp.broadcast_to(x, (num_classes,)), optim.init_loss_scale(tc)
        )
        skipped = jnp.zeros((num_classes,), jnp.int32)
    rng = jax.random.key_data(jax.random.key(seed))
    return TrainState(jnp.zeros((), jnp.int32), params, opt_state, ls, skipped, rng)


def num_stacked_classes(params: Any) -> int:
    """K of a class-stacked GPT-2 tree (wte embedding is [K, V, D])."""
    wte = params["wte"]["embedding"]
    if wte.ndim != 3:
        raise ValueError(
            f"stacked training needs params stacked on a class axis; wte has shape {wte.shape}"
        )
    return int(wte.shape[0])


# --- steps ----------------------------------------------------------------------------------


def _split_micro(x: Array, accum: int) -> Array:
    """[B, ...] -> [B/A, A, ...]: micro-batch j is rows j, j+A, ... so a row-sharded batch
    splits without moving data between devices."""
    return x.reshape(x.shape[0] // accum, accum, *x.shape[1:])


def _accumulated_grads(params, batch, key, scale, model_config, accum, loss_fn, use_dropout):
    """Gradients of scale * (sum nll / total weight) summed over `accum` micro-batches."""
    total = jnp.sum(batch["weights"].astype(jnp.float32))
    denom = jnp.where(total > 0, total, 1.0)  # an all-padding batch has loss 0, not NaN

    def micro(mb, j):
        rng = jax.random.fold_in(key, j) if use_dropout else None

        def f(p):
            nll, w = loss_fn(p, mb, model_config, rng)
            return nll / denom * scale, (nll, w)

        (_, (nll, w)), g = jax.value_and_grad(f, has_aux=True)(params)
        return g, nll, w

    if accum == 1:
        return micro(batch, 0)
    split = jax.tree_util.tree_map(lambda x: _split_micro(x, accum), batch)

    def body(carry, j):
        mb = jax.tree_util.tree_map(
            lambda x: jax.lax.dynamic_index_in_dim(x, j, axis=1, keepdims=False), split
        )
        g, nll, w = micro(mb, j)
        g_acc, nll_acc, w_acc = carry
        return (jax.tree_util.tree_map(jnp.add, g_acc, g), nll_acc + nll, w_acc + w), None

    zeros = (jax.tree_util.tree_map(jnp.zeros_like, params), jnp.float32(0), jnp.float32(0))
    (g, nll, w), _ = jax.lax.scan(body, zeros, jnp.arange(accum))
    return g, nll, w


def _joint_grads(params, batch, key, model_config, accum, objective: JointObjective, use_dropout):
    """Gradients of a joint objective over all (stacked) class models, summed over `accum`
    micro-batches of the row axis (axis 1 of the [K, B, T] slices, axis 0 of `labels`), with the
    whole batch's denominators; and its sums."""
    totals = objective.totals(batch)

    def micro(mb, j):
        rng = jax.random.fold_in(key, j) if use_dropout else None

        def f(p):
            sums = objective.sums_fn(p, mb, model_config, rng)
            return objective.loss(sums, totals), sums

        (_, sums), g = jax.value_and_grad(f, has_aux=True)(params)
        return g, sums

    if accum == 1:
        return micro(batch, 0)

    def split(name, x):  # rows j, j+A, ... as in _split_micro, on the row axis
        axis = 0 if name == "labels" else 1
        return jnp.moveaxis(
            x.reshape(*x.shape[:axis], x.shape[axis] // accum, accum, *x.shape[axis + 1 :]),
            axis + 1,
            0,
        )

    parts = {n: split(n, x) for n, x in batch.items()}

    def body(carry, j):
        g, sums = micro({n: x[j] for n, x in parts.items()}, j)
        return jax.tree_util.tree_map(jnp.add, carry, (g, sums)), None

    zeros = jax.eval_shape(lambda: micro({n: x[0] for n, x in parts.items()}, 0))
    zeros = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), zeros)
    (g, sums), _ = jax.lax.scan(body, zeros, jnp.arange(accum))
    return g, sums


def make_train_step(
    model_config: GPT2Config,
    tc: Any,
    tx: optax.GradientTransformationExtraArgs,
    schedules: Sequence[optax.Schedule],
    stacked: bool,
    loss_fn: LossFn | JointObjective = token_loss_sums,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """Pure (state, batch) -> (state, metrics); jit it with `jit_train_step`.

    `schedules`: one per class model (class c follows schedules[c]), or one for every model.
    With a per-model loss (`lm`), each model takes the gradient of its own loss on its own
    batch, and a model whose batch has no real token (all weights 0) takes no step: params,
    optimizer state (hence its schedule position) and loss scale stay as they are. With a
    `JointObjective`, the gradient of one loss over all models, then each model's update.
    metrics: nll_sum, weight (per class when stacked and per-model), grad_norm, lr, finite, real,
    loss_scale, skipped (per class when stacked); joint: also ce, texts, correct."""
    accum = int(tc.grad_accum)
    use_scale = model_config.dtype == "float16"
    use_dropout = model_config.dropout > 0
    joint = isinstance(loss_fn, JointObjective)
    if joint and use_scale:
        raise ValueError("train.objective='decision' runs in bfloat16 or float32, not float16")

    def learning_rate(count, c):
        if len(schedules) == 1:
            return schedules[0](count)
        return jnp.stack([s(count) for s in schedules])[c]

    def update(params, opt_state, ls, skipped, g, loss_ok, real, scale, c):
        """One model's optimizer update from its gradients (skipped when not `real`, or on a
        float16 overflow)."""
        if use_scale:
            g = jax.tree_util.tree_map(lambda x: x / scale, g)
        finite = optim.all_finite(g) & loss_ok
        lr = learning_rate(optim.applied_updates(opt_state), c)
        updates, new_opt = tx.update(g, opt_state, params, learning_rate=lr)
        new_params = optax.apply_updates(params, updates)
        applied = real & finite if use_scale else real
        new_params = optim.select_tree(applied, new_params, params)
        new_opt = optim.select_tree(applied, new_opt, opt_state)
        if use_scale:
            new_ls = optim.select_tree(real, optim.update_loss_scale(ls, finite, tc), ls)
            skipped = skipped + (real & ~finite).astype(jnp.int32)
        else:
            new_ls = ls
        m = dict(
            grad_norm=optax.tree.norm(g),
            lr=lr,
            finite=finite,
            real=real,
            loss_scale=scale,
            skipped=skipped,
        )
        return new_params, new_opt, new_ls, skipped, m

    def one_model(params, opt_state, ls, skipped, batch, key, c):
        scale = ls.scale if use_scale else jnp.float32(1)
        g, nll, w = _accumulated_grads(
            params, batch, key, scale, model_config, accum, loss_fn, use_dropout
        )
        # (not w > 0: a NaN weight is an overflow to skip, not padding)
        real = jnp.any(batch["weights"] != 0)
        *out, m = update(params, opt_state, ls, skipped, g, jnp.isfinite(nll), real, scale, c)
        return (*out, dict(nll_sum=nll, weight=w, tokens=w, **m))

    def per_model_step(state: TrainState, batch: Batch, key):
        args = (state.params, state.opt_state, state.loss_scale, state.skipped, batch)
        if not stacked:
            return one_model(*args, key, 0)

        def per(p, o, ls, sk, b, c):
            return one_model(p, o, ls, sk, b, jax.random.fold_in(key, c), c)

        classes = jnp.arange(state.skipped.shape[0])
        if tc.stack_classes:
            return jax.vmap(per)(*args, classes)
        return jax.lax.map(lambda a: per(*a), (*args, classes))

    def joint_step(state: TrainState, batch: Batch, key):
        g, sums = _joint_grads(state.params, batch, key, model_config, accum, loss_fn, use_dropout)
        loss_ok = jnp.isfinite(sums["ce"]) & jnp.isfinite(sums["lm_nll"])
        real = jnp.any(batch["labels"] >= 0)
        one = jnp.float32(1)
        if stacked:
            classes = jnp.arange(state.skipped.shape[0])
            out = jax.vmap(
                lambda p, o, ls, sk, gg, c: update(p, o, ls, sk, gg, loss_ok, real, one, c)
            )(state.params, state.opt_state, state.loss_scale, state.skipped, g, classes)
        else:
            out = update(
                state.params,
                state.opt_state,
                state.loss_scale,
                state.skipped,
                g,
                loss_ok,
                real,
                one,
                0,
            )
        *out, m = out
        extra = dict(
            nll_sum=sums["lm_nll"],
            weight=sums["lm_weight"],
            ce=sums["ce"],
            texts=sums["texts"],
            correct=sums["correct"],
            tokens=jnp.sum(batch["weights"].astype(jnp.float32)),
        )
        return (*out, {**m, **extra})

    def step_fn(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        params, opt_state, ls, skipped, m = (joint_step if joint else per_model_step)(
            state, batch, key
        )
        return TrainState(state.step + 1, params, opt_state, ls, skipped, state.rng), m

    return step_fn


def make_eval_step(
    model_config: GPT2Config, stacked: bool, loss_fn: LossFn = token_loss_sums
) -> Callable:
    """Jitted (params, batch) -> (nll_sum, weight) without dropout; per class when stacked."""

    def f(params, batch):
        return loss_fn(params, batch, model_config, None)

    return jax.jit(jax.vmap(f) if stacked else f)


# --- compiled step ----------------------------------------------------------------------------


def jit_train_step(step_fn: Callable, mesh: Mesh, stacked: bool, fsdp: bool = False) -> Callable:
    """jit with the state donated (no second copy of params/optimizer state); the new state keeps
    its layout (`sharding.state_shardings`: class models split over the 'class' axis, the rest
    replicated) and the metrics come out replicated. Compiled at the first call, which gives
    the state's structure."""
    jitted = {}

    def call(state, batch):
        if "step" not in jitted:
            out = (
                sharding.state_shardings(mesh, state, stacked, fsdp),
                sharding.replicated(mesh),
            )
            jitted["step"] = jax.jit(step_fn, donate_argnums=0, out_shardings=out)
        return jitted["step"](state, batch)

    return call


@functools.lru_cache(maxsize=8)
def compiled_train_step(
    model_config: GPT2Config,
    tc: ml_collections.FrozenConfigDict,
    stacked: bool,
    total_steps: int | tuple[int, ...],
    mesh: Mesh,
    loss_fn: LossFn | JointObjective = token_loss_sums,
) -> tuple[optax.GradientTransformationExtraArgs, tuple[optax.Schedule, ...], Callable]:
    """(optimizer, schedules, jitted step), memoised so that repeated `train` calls in one process
    (resume, sweeps, tests) with the same settings reuse one compilation. `total_steps`: the
    optimizer updates of each class model in the run (a tuple, one per class), or one int for
    every model; each model's schedule runs over its own total."""
    totals = total_steps if isinstance(total_steps, tuple) else (int(total_steps),)
    schedules = tuple(optim.make_schedule(tc, n) for n in totals)
    tx = optim.make_optimizer(tc)
    step = jit_train_step(
        make_train_step(model_config, tc, tx, schedules, stacked, loss_fn),
        mesh,
        stacked,
        bool(tc.fsdp),
    )
    return tx, schedules, step


def check_batch(
    batch: Batch,
    *,
    stacked: bool,
    num_classes: int | None,
    accum: int,
    n_devices: int,
    sliced: bool = False,
) -> None:
    """Shape errors here, with a message, rather than deep inside XLA. `sliced`: a joint
    objective's [S, B, T] batch with `labels` [B]."""
    shape = np.shape(batch["inputs"])
    want = 3 if stacked or sliced else 2
    if len(shape) != want:
        raise ValueError(
            f"expected {'[K, B, T]' if want == 3 else '[B, T]'} batches, "
            f"got inputs of shape {shape}"
        )
    if stacked and shape[0] != num_classes:
        raise ValueError(f"batch has {shape[0]} classes, the stacked params {num_classes}")
    if sliced and np.shape(batch.get("labels")) != shape[1:2]:
        raise ValueError(f"a sliced batch needs labels [B] for its {shape[1]} rows")
    rows = shape[-2]  # the global batch: every process builds all of it, feeds its own rows
    if rows % accum or (rows // accum) % n_devices:
        raise ValueError(
            f"{rows} rows per step must split into grad_accum={accum} micro-batches "
            f"divisible by {n_devices} devices"
        )
