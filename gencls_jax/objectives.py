"""Training objectives: what a train step minimises, as (loss sum, weight) over one batch.

The objective is its own axis, separate from the conditioning (`conditioning.py`): the same
objective trains per-class models (vmapped over the class axis) and label-prefix models alike.
Today there is one, the language-model objective (token-weighted negative log-likelihood),
in two forms that differ only in masking: packed rows need their segment ids; right-padded
rows (one text per row) do not, and then run cuDNN's built-in causal kernel. A new objective
is one function (or class) here and an entry in `OBJECTIVES`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from gencls_jax.head import head_log_probs
from gencls_jax.model import GPT2Config, apply

Array = jax.Array
Batch = Mapping[str, Any]
LossFn = Callable[[Any, Batch, GPT2Config, Array | None], tuple[Array, Array]]


def token_loss_sums(
    params: Any, batch: Batch, model_config: GPT2Config, dropout_rng: Array | None
) -> tuple[Array, Array]:
    """(sum of weights * -log p(targets), sum of weights) over a [B, T] batch, float32."""
    hidden = apply(
        params,
        batch["inputs"],
        model_config,
        batch.get("positions"),
        batch.get("segment_ids"),
        dropout_rng=dropout_rng,
        return_hidden=True,
    )
    w = batch["weights"].astype(jnp.float32)
    targets = jnp.maximum(batch["targets"], 0)  # padding targets may be < 0
    lp = head_log_probs(hidden, params["wte"]["embedding"], targets, model_config)
    return -jnp.sum(w * lp), jnp.sum(w)


def causal_token_loss_sums(
    params: Any, batch: Batch, model_config: GPT2Config, dropout_rng: Array | None
):
    """`token_loss_sums` for right-padded rows (one text per row): the causal mask alone is exact
    for their real tokens, so segment ids are dropped and cuDNN runs its built-in causal kernel."""
    return token_loss_sums(
        params, {k: v for k, v in batch.items() if k != "segment_ids"}, model_config, dropout_rng
    )


OBJECTIVES = ("lm",)


def loss_fn_for(config: Any) -> LossFn:
    """The (loss sum, weight) function of `train.objective` for `data.batching`'s rows."""
    if config.train.objective not in OBJECTIVES:
        raise ValueError(
            f"train.objective must be one of {OBJECTIVES}, got {config.train.objective!r}"
        )
    return token_loss_sums if config.data.batching == "pack" else causal_token_loss_sums
