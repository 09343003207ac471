"""Training objectives: what a train step minimises.

The objective is its own axis, separate from the conditioning (`conditioning.py`):
- `lm`: the language-model objective (token-weighted negative log-likelihood), one model at a
  time (per-class models vmapped over the class axis), as (loss sum, weight) over one batch; in
  two forms that differ only in masking: packed rows need their segment ids, right-padded rows
  (one text per row) do not and run cuDNN's built-in causal kernel.
- `decision`: a generative classifier trained to classify. Every text of a mixed-class batch is
  scored by every class (K class models, or one model with K label prefixes): the loss is
  `train.lm_weight` x the LM loss of the true class + `train.decision_weight` (lambda) x the
  cross-entropy of softmax_c(log p(x|c) + log p(c)) against the label. lambda = 0 is the LM.
  The discriminative baseline (`conditioning.Discriminative`) trains with the same objective,
  its scores being a classification head's logits and its LM weight 0.
  It couples the class models, so its step takes the gradient of one joint loss
  (`JointObjective`) and then updates each model.
A new objective is one function here and an entry in `OBJECTIVES`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

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


def token_log_probs(
    params: Any, batch: Batch, model_config: GPT2Config, dropout_rng: Array | None
) -> Array:
    """[B, T] log p(targets) of right-padded rows (causal mask only), float32."""
    hidden = apply(
        params,
        batch["inputs"],
        model_config,
        batch.get("positions"),
        dropout_rng=dropout_rng,
        return_hidden=True,
    )
    targets = jnp.maximum(batch["targets"], 0)
    return head_log_probs(hidden, params["wte"]["embedding"], targets, model_config)


# --- the decision objective --------------------------------------------------------------------

DecisionSums = dict[str, Array]  # lm_nll, lm_weight, ce, texts, correct (sums over a batch)


def class_decision_sums(
    params: Any,
    batch: Batch,
    model_config: GPT2Config,
    dropout_rng: Array | None,
    *,
    stacked: bool,
    log_prior: Array,
) -> DecisionSums:
    """Sums of the decision objective over a sliced batch ([K, B, T] arrays, `labels` [B]): slice
    k is every text as class k's model reads it, scored by class model k (`stacked`) or by the
    one model. log p(x|c) is the weighted sum of slice c's token log-probabilities."""
    k = batch["inputs"].shape[0]
    rngs = None if dropout_rng is None else jax.random.split(dropout_rng, k)
    slices = {n: v for n, v in batch.items() if n != "labels"}
    lp = jax.vmap(
        token_log_probs, in_axes=(0 if stacked else None, 0, None, None if rngs is None else 0)
    )(params, slices, model_config, rngs)  # [K, B, T]
    w = batch["weights"].astype(jnp.float32)
    ll = jnp.sum(w * lp, axis=-1)  # [K, B]
    true = jax.nn.one_hot(batch["labels"], k, dtype=jnp.float32).T[
        ..., None
    ]  # [K, B, 1]; filler rows 0
    scores = ll.T + log_prior  # [B, K]
    return dict(
        lm_nll=-jnp.sum(true * w * lp),
        lm_weight=jnp.sum(true * w),
        **_ce_sums(scores, batch["labels"]),
    )


def _ce_sums(scores: Array, labels: Array) -> DecisionSums:
    real = labels >= 0
    logp = jax.nn.log_softmax(scores, axis=-1)
    picked = jnp.take_along_axis(logp, jnp.maximum(labels, 0)[:, None], axis=-1)[:, 0]
    right = jnp.argmax(scores, axis=-1) == labels
    return dict(
        ce=-jnp.sum(jnp.where(real, picked, 0.0)),
        texts=jnp.sum(real).astype(jnp.float32),
        correct=jnp.sum(real & right).astype(jnp.float32),
    )


def head_decision_sums(
    params: Any, batch: Batch, model_config: GPT2Config, dropout_rng: Array | None, *, pool: str
) -> DecisionSums:
    """The decision sums of a classification head on GPT-2's features (the discriminative
    baseline: no LM term). `params` = {'body': GPT-2, 'head': {'kernel', 'bias'}}; one slice."""
    logits = head_logits(
        params,
        {n: v[0] for n, v in batch.items() if n != "labels"},
        model_config,
        dropout_rng,
        pool,
    )
    zero = jnp.float32(0)
    return dict(lm_nll=zero, lm_weight=zero, **_ce_sums(logits, batch["labels"]))


def head_logits(
    params: Any, batch: Batch, model_config: GPT2Config, dropout_rng: Array | None, pool: str
) -> Array:
    """[B, K] logits of the classification head over pooled features of right-padded rows:
    'mean' over the text's positions (weight > 0), or 'last' (the last of them, which has read
    the whole text)."""
    hidden = apply(
        params["body"],
        batch["inputs"],
        model_config,
        batch.get("positions"),
        dropout_rng=dropout_rng,
        return_hidden=True,
    ).astype(jnp.float32)
    w = (batch["weights"] > 0).astype(jnp.float32)
    if pool == "mean":
        feats = jnp.sum(hidden * w[..., None], axis=1) / jnp.maximum(
            jnp.sum(w, axis=1, keepdims=True), 1.0
        )
    elif pool == "last":
        last = jnp.maximum(jnp.sum(w, axis=1).astype(jnp.int32) - 1, 0)
        feats = jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
    else:
        raise ValueError(f"model.pool must be 'mean' or 'last', got {pool!r}")
    return feats @ params["head"]["kernel"] + params["head"]["bias"]


class JointObjective(NamedTuple):
    """A loss over all class models at once: sums_fn(params, batch, model_config, rng) ->
    DecisionSums; loss = lm_coef x lm_nll / (the batch's true-class tokens) + ce_coef x ce /
    (the batch's texts). The step takes its gradient and updates each model."""

    sums_fn: Callable[..., DecisionSums]
    lm_coef: float
    ce_coef: float

    def totals(self, batch: Batch) -> tuple[Array, Array]:
        """(true-class token weight, texts) of a whole batch: the denominators of every
        micro-batch, so that accumulation equals one big batch."""
        labels = batch["labels"]
        k = batch["weights"].shape[0]
        true = jax.nn.one_hot(labels, k, dtype=jnp.float32).T[..., None]
        lm = jnp.sum(true * batch["weights"].astype(jnp.float32))
        return jnp.where(lm > 0, lm, 1.0), jnp.maximum(
            jnp.sum(labels >= 0).astype(jnp.float32), 1.0
        )

    def loss(self, sums: DecisionSums, totals: tuple[Array, Array]) -> Array:
        return self.lm_coef * sums["lm_nll"] / totals[0] + self.ce_coef * sums["ce"] / totals[1]


OBJECTIVES = ("lm", "decision")


def lm_loss_fn(config: Any) -> LossFn:
    """The LM's (loss sum, weight) for `data.batching`'s rows (also the validation loss of every
    generative run, whatever its training objective)."""
    return token_loss_sums if config.data.batching == "pack" else causal_token_loss_sums


def loss_fn_for(
    config: Any, decision_sums: Callable[..., DecisionSums] | None = None
) -> LossFn | JointObjective:
    """`train.objective`'s loss: for 'lm', the (loss sum, weight) function for `data.batching`'s
    rows; for 'decision', a JointObjective over `decision_sums` (the conditioning's scores)."""
    t = config.train
    if t.objective not in OBJECTIVES:
        raise ValueError(f"train.objective must be one of {OBJECTIVES}, got {t.objective!r}")
    if t.objective == "lm":
        return lm_loss_fn(config)
    if decision_sums is None:
        raise ValueError("train.objective='decision' needs a conditioning that scores classes")
    return JointObjective(decision_sums, float(t.lm_weight), float(t.decision_weight))
