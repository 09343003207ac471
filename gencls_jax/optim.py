"""Optimizer, learning-rate schedule, weight-decay mask and dynamic loss scaling.

Everything is built from `config.train` (no constants of its own) and is a pure function or
an optax transformation, so the train step can vmap it over a stacked class axis.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

Array = jax.Array

SCHEDULES = ("constant", "linear", "cosine")

# Parameter leaves that get weight decay: the Dense kernels. Everything else in our GPT-2
# (biases, LayerNorm scale/bias, the wte/wpe embeddings) is excluded, as in GPT-2/BERT recipes.
DECAYED_LEAF_NAMES = ("kernel",)


def make_schedule(tc: Any, total_steps: int) -> optax.Schedule:
    """Linear warmup from 0 to `tc.lr` over `tc.warmup_steps`, then constant / linear / cosine
    decay to `tc.lr * tc.end_lr_factor` at `total_steps` (counted in optimizer updates)."""
    if tc.schedule not in SCHEDULES:
        raise ValueError(f"train.schedule must be one of {SCHEDULES}, got {tc.schedule!r}")
    peak, end = float(tc.lr), float(tc.lr) * float(tc.end_lr_factor)
    warm = max(0, min(int(tc.warmup_steps), int(total_steps)))
    decay_steps = max(int(total_steps) - warm, 1)
    if tc.schedule == "constant":
        after = optax.constant_schedule(peak)
    elif tc.schedule == "linear":
        after = optax.linear_schedule(peak, end, decay_steps)
    else:
        after = optax.cosine_decay_schedule(peak, decay_steps, alpha=float(tc.end_lr_factor))
    if warm == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warm), after], [warm])


def _leaf_name(path: tuple) -> str:
    last = path[-1]
    return str(getattr(last, "key", getattr(last, "name", last)))


def decay_mask(params: Any) -> Any:
    """Same tree as `params`, True where AdamW applies weight decay (Dense kernels only).

    Works unchanged on class-stacked trees: it looks at names, not shapes."""
    return jax.tree_util.tree_map_with_path(lambda p, _: _leaf_name(p) in DECAYED_LEAF_NAMES, params)


def make_optimizer(tc: Any, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Global-norm clipping (if `tc.grad_clip` > 0) then AdamW with the decay mask."""
    schedule = make_schedule(tc, total_steps)
    parts = []
    if tc.grad_clip and tc.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(float(tc.grad_clip)))
    parts.append(
        optax.adamw(
            schedule,
            b1=float(tc.b1),
            b2=float(tc.b2),
            eps=float(tc.eps),
            weight_decay=float(tc.weight_decay),
            mask=decay_mask,
        )
    )
    return optax.chain(*parts), schedule


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
