"""Optimizer, learning-rate schedule, weight-decay mask and dynamic loss scaling.

Everything is built from `config.train` (no constants of its own) and is a pure function or
an optax transformation, so the train step can vmap it over a stacked class axis. The learning
rate is not inside the optimizer: the step computes it from each model's own schedule (its own
total of optimizer updates, see `make_schedule`) and passes it to `tx.update(...,
learning_rate=lr)`, so K stacked class models can follow K different schedules. The step
takes the schedules' numbers as arrays (`schedule_values`, `scheduled_lr`), so its compiled
program does not depend on them; `make_schedule` is the same function with them fixed.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

Array = jax.Array

SCHEDULES = ("constant", "linear", "cosine")

# Parameter leaves that get weight decay: the Dense kernels. Everything else in our GPT-2
# (biases, LayerNorm scale/bias, the wte/wpe embeddings) is excluded, as in GPT-2/BERT recipes.
DECAYED_LEAF_NAMES = ("kernel",)


def warmup_length(tc: Any, total_steps: int) -> int:
    """Warmup updates of a run of `total_steps`: min(warmup_steps, max(1, floor(warmup_max_fraction
    * total_steps))), 0 when `warmup_steps` is 0. Short runs (a small class, a small data set)
    warm up over at most that fraction of their updates instead of spending all of them there."""
    fraction = float(tc.warmup_max_fraction)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"train.warmup_max_fraction must be in [0, 1], got {fraction}")
    if int(tc.warmup_steps) <= 0:
        return 0
    return min(int(tc.warmup_steps), max(1, math.floor(fraction * int(total_steps))))


def make_schedule(tc: Any, total_steps: int) -> optax.Schedule:
    """lr of the update after `count` applied updates, in a run of `total_steps` updates.

    Warmup (W = `warmup_length`): update t < W gets lr * (t + 1) / W, so the first update
    already trains and update W - 1 is at the peak. Then constant / linear / cosine decay from
    the peak towards lr * end_lr_factor with progress p = (t - W + 1) / (T - W + 1): the last
    update (t = T - 1) has p < 1, so its lr is > 0 even with end_lr_factor 0. The cosine is
    written as sin^2(pi (1 - p) / 2) so that float32 keeps that last lr above 0 for long runs."""
    h = schedule_values(tc, (total_steps,))
    return lambda count: scheduled_lr(tc.schedule, count, h, 0)


def schedule_values(tc: Any, totals: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The numbers of each model's schedule, as arrays the train step takes as arguments (not
    constants traced into it, so runs of other sizes or another lr share its compiled program):
    total and warmup updates per model, and the peak, end and peak - end rates (the difference
    taken in float64, as a constant would be)."""
    if tc.schedule not in SCHEDULES:
        raise ValueError(f"train.schedule must be one of {SCHEDULES}, got {tc.schedule!r}")
    peak = float(tc.lr)
    end = peak * float(tc.end_lr_factor)
    total = [max(int(n), 1) for n in totals]
    return dict(
        total=np.asarray(total, np.int32),
        warm=np.asarray([warmup_length(tc, n) for n in total], np.int32),
        peak=np.float32(peak),
        end=np.float32(end),
        span=np.float32(peak - end),
    )


def scheduled_lr(kind: str, count, h: Mapping[str, Any], model) -> Array:
    """`make_schedule`'s lr for model `model` (an index into `h`'s per-model arrays) of a
    `schedule_values` record `h`, traceable with `h` and `model` as arguments."""
    t = jnp.asarray(count, jnp.float32)
    total, warm = h["total"][model], h["warm"][model]
    # 1 - p: from 1 at the peak down to > 0
    rest = jnp.clip((total - t) / (total - warm + 1), 0.0, 1.0)
    if kind == "constant":
        after = jnp.full_like(rest, h["peak"])
    elif kind == "linear":
        after = h["end"] + h["span"] * rest
    else:
        after = h["end"] + h["span"] * jnp.sin(0.5 * jnp.pi * rest) ** 2
    return jnp.where(t < warm, h["peak"] * (t + 1) / jnp.maximum(warm, 1), after)


def _key_name(key) -> str:
    """The name of one step of a tree path (a dict key, an attribute)."""
    return str(getattr(key, "key", getattr(key, "name", key)))


def _leaf_name(path: tuple) -> str:
    return _key_name(path[-1])


def decay_mask(params: Any) -> Any:
    """Same tree as `params`, True where AdamW applies weight decay (Dense kernels only).

    Works unchanged on class-stacked trees: it looks at names, not shapes."""
    return jax.tree_util.tree_map_with_path(
        lambda p, _: _leaf_name(p) in DECAYED_LEAF_NAMES, params
    )


def layer_lr_multipliers(params: Any, decay: float) -> Any:
    """Same tree as one GPT-2's `params` (or a discriminative {'body', 'head'} tree): the factor
    of each leaf's learning rate under layer-wise decay (ULMFiT/ELECTRA: the lower a layer, the
    more general its features, the less it should move). The blocks under 'h' are stacked on a
    leading layer axis of L: layer i gets decay^(L-1-i) ([L, 1, ...], the top block 1); wte and
    wpe decay^L; the rest (ln_f, a classification head) 1. Names and that axis only, so it
    works inside the class-axis vmap, which hands it one model's tree."""
    paths = jax.tree_util.tree_leaves_with_path(params)
    layers = next((x.shape[0] for p, x in paths if "h" in _names(p)), None)
    if layers is None:
        raise ValueError("train.layer_lr_decay needs GPT-2 parameters (transformer blocks 'h')")
    per_layer = (float(decay) ** np.arange(layers - 1, -1, -1, dtype=np.float64)).astype(np.float32)

    def factor(path, x):
        names = _names(path)
        if "h" in names:
            return jnp.asarray(per_layer.reshape((layers,) + (1,) * (x.ndim - 1)))
        return jnp.float32(float(decay) ** layers if names & {"wte", "wpe"} else 1.0)

    return jax.tree_util.tree_map_with_path(factor, params)


def _names(path: tuple) -> set[str]:
    return {_key_name(k) for k in path}


def scale_by_layer_lr(decay: float) -> optax.GradientTransformationExtraArgs:
    """updates x `layer_lr_multipliers` (no state): the layer-wise learning-rate decay."""

    def update(updates, state, params=None, **_extra):
        factors = layer_lr_multipliers(updates, decay)
        return jax.tree_util.tree_map(lambda u, f: u * f, updates, factors), state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


def scale_by_given_learning_rate() -> optax.GradientTransformationExtraArgs:
    """updates * -learning_rate, with the rate given to `update` as a keyword (no state)."""

    def update(updates, state, params=None, *, learning_rate, **_extra):
        return jax.tree_util.tree_map(lambda u: -learning_rate * u, updates), state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


def make_optimizer(tc: Any) -> optax.GradientTransformationExtraArgs:
    """Global-norm clipping (if `tc.grad_clip` > 0) then AdamW with the decay mask, each leaf's
    update (weight decay included) scaled by its layer's factor when `tc.layer_lr_decay` < 1;
    the learning rate comes with each update: `tx.update(grads, state, params,
    learning_rate=lr)`."""
    parts = []
    if tc.grad_clip and tc.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(float(tc.grad_clip)))
    parts += [
        optax.scale_by_adam(b1=float(tc.b1), b2=float(tc.b2), eps=float(tc.eps)),
        optax.masked(optax.add_decayed_weights(float(tc.weight_decay)), decay_mask),
    ]
    if float(tc.layer_lr_decay) != 1.0:
        parts.append(scale_by_layer_lr(float(tc.layer_lr_decay)))
    parts.append(scale_by_given_learning_rate())
    return optax.chain(*parts)


def applied_updates(opt_state: Any) -> Array:
    """Updates applied so far (Adam's count: a skipped step restores the old state, count
    included)."""
    return optax.tree_utils.tree_get(opt_state, "count")


# --- dynamic loss scaling (float16) -------------------------------------------------------


class LossScale(NamedTuple):
    """Dynamic loss-scale state: the scale and the number of finite steps since it last changed."""

    scale: Array  # float32 scalar
    good_steps: Array  # int32 scalar


def init_loss_scale(tc: Any) -> LossScale:
    return LossScale(jnp.asarray(tc.loss_scale, jnp.float32), jnp.asarray(0, jnp.int32))


def all_finite(tree: Any) -> Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def update_loss_scale(ls: LossScale, finite: Array, tc: Any) -> LossScale:
    """Non-finite grads: divide the scale by `loss_scale_factor` (not below `loss_scale_min`).
    After `loss_scale_period` finite steps in a row: multiply it by the factor."""
    factor = jnp.float32(tc.loss_scale_factor)
    grown = ls.good_steps + 1 >= tc.loss_scale_period
    scale_ok = jnp.where(grown, ls.scale * factor, ls.scale)
    good_ok = jnp.where(grown, 0, ls.good_steps + 1)
    scale_bad = jnp.maximum(ls.scale / factor, jnp.float32(tc.loss_scale_min))
    return LossScale(
        jnp.where(finite, scale_ok, scale_bad).astype(jnp.float32),
        jnp.where(finite, good_ok, 0).astype(jnp.int32),
    )


def select_tree(pred: Array, on_true: Any, on_false: Any) -> Any:
    """Elementwise `pred ? on_true : on_false` over two trees (vmap-friendly, unlike lax.cond)."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)
