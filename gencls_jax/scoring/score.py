"""log p(x | c): pure functions of (params, rows), with a class axis.

No globals, no hidden state: `config` is a frozen, hashable dataclass, so every function here
can be wrapped in `jax.jit(..., static_argnames="config")`, vmapped, or sharded by the caller.

One per-token function is the core, `token_log_probs`: log p(target_t | inputs_<=t) of [B, T]
rows (`data.rows.make_rows`: inputs [BOS, x_0..x_{n-2}] predict targets [x_0..x_{n-1}]; a
label prefix or a window's overlap conditions with weight 0). `class_token_log_probs` adds the
class axis, [K, B, T]: K class models stacked on axis 0 of the parameters (per_class), and/or K
slices of the rows (slice k: every text as class k's model reads it, e.g. after class k's label
prefix). From it come the scores a decision uses (`class_sums`, [B, K]), the per-token terms an
explanation shows (`class_token_values`, [B, T, K]) and the decision objective's class scores
(`training/objectives.py`). The discriminative baseline's head (`head_logits`) is the one
scorer without per-token likelihoods.

For users' own JAX code on texts that fit the context: `sequence_log_likelihood` (the first
token conditioned on GPT-2's BOS, right or left padding), `class_log_likelihoods` (K stacked
models) and `score_texts` (a run's EOS and label prefixes added inside).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp

from gencls_jax.model.gpt2 import GPT2Config, apply
from gencls_jax.model.head import chunked_token_log_probs, head_log_probs
from gencls_jax.model.head_kernel import fused_head_log_probs

Array = jax.Array
Batch = dict


def token_log_probs(
    params: dict,
    batch: Batch,
    config: GPT2Config,
    rng: Array | None = None,
    *,
    packed: bool = False,
    chunk: int = 0,
    embed_delta: Array | None = None,
) -> Array:
    """[B, T] float32 log p(targets_t | inputs_<=t) of one model, unweighted (a padding target
    < 0 is read as 0: weight it out). `packed`: rows hold several texts (their segment ids and
    positions mask them apart); otherwise each row is one right-padded text and the causal mask
    alone is exact for its real tokens (cuDNN's causal kernel runs). Dropout is on exactly when
    `rng` is given. `chunk` > 0: the head in chunks of that many tokens, so a scoring batch
    never holds more than one chunk of float32 logits; 0: the fused head at once (training).
    `embed_delta` [B, T, D]: added to the input token embeddings (adversarial training)."""
    hidden = apply(
        params,
        batch["inputs"],
        config,
        batch.get("positions"),
        batch.get("segment_ids") if packed else None,
        dropout_rng=rng,
        return_hidden=True,
        embed_delta=embed_delta,
    )
    targets = jnp.maximum(batch["targets"], 0)
    embedding = params["wte"]["embedding"]
    if chunk and config.scoring_head == "pallas":
        return fused_head_log_probs(
            hidden, embedding, targets, config.compute_dtype, config.tile_sizes
        )
    if chunk:
        return chunked_token_log_probs(hidden, embedding, targets, config.compute_dtype, chunk)
    return head_log_probs(hidden, embedding, targets, config.compute_dtype)


def class_token_log_probs(
    params: dict,
    batch: Batch,
    config: GPT2Config,
    rngs: Array | None = None,
    *,
    stacked: bool,
    packed: bool = False,
    chunk: int = 0,
    sequential: bool = False,
    embed_delta: Array | None = None,
) -> Array:
    """[K, B, T] `token_log_probs` of every class. The class axis is axis 0 of the parameters
    when `stacked` (K class models), and of the batch arrays when they are [K, B, T] (slice k:
    the rows as class k's model reads them); one model on [B, T] rows gives K = 1. `rngs`: one
    dropout key per class. `sequential`: one class after another (`lax.map`), each class's
    forward pass recomputed in the backward pass, so that a step holds one class model's
    activations at a time (`train.stack_classes=False`); else all at once: one model reads its
    K slices as K x B rows of one call (dropout from the first class's key), K models `vmap`
    (where packed rows take the dense mask: cuDNN's packed kernel has no batching rule).
    `embed_delta`: added to the input token embeddings, shaped as the inputs plus the width."""
    sliced, delta = batch["inputs"].ndim == 3, embed_delta  # delta: [K, B, T, D] or [B, T, D]

    def one(p, b, r, d, config=config):
        return token_log_probs(p, b, config, r, packed=packed, chunk=chunk, embed_delta=d)

    if not (stacked or sliced):
        return one(params, batch, rngs, delta)[None]
    if sliced and not (stacked or sequential):
        k = batch["inputs"].shape[0]
        rows = {n: v.reshape(-1, *v.shape[2:]) for n, v in batch.items()}
        d = None if delta is None else delta.reshape(-1, *delta.shape[2:])
        return one(params, rows, None if rngs is None else rngs[0], d).reshape(
            k, -1, *rows["inputs"].shape[1:]
        )

    if sequential:

        @jax.checkpoint
        def at(xs):
            p, b, r, d = xs
            return one(p if stacked else params, b if sliced else batch, r, d)

        xs = (params if stacked else None, batch if sliced else None, rngs, delta)
        return jax.lax.map(at, xs)
    axes = (0 if stacked else None, 0 if sliced else None, None if rngs is None else 0)
    mapped = functools.partial(one, config=config.replace(max_segments=0))
    return jax.vmap(mapped, in_axes=(*axes, None if delta is None else 0))(
        params, batch, rngs, delta
    )


def weighted(log_probs: Array, weights: Array) -> Array:
    """weights * log_probs, exactly 0 where the weight is 0 (padding, a label prefix, a window's
    overlap), whatever the log-probability there."""
    return jnp.where(weights != 0, log_probs * weights, 0.0)


def class_sums(params: dict, batch: Batch, config: GPT2Config, *, stacked: bool) -> Array:
    """[B, K] sum over each row's weighted tokens, per class: the rows' share of log p(x | c)."""
    lp = class_token_log_probs(params, batch, config, stacked=stacked, chunk=config.head_chunk)
    return jnp.sum(weighted(lp, batch["weights"]), axis=-1).T


def class_segment_sums(
    params: dict, batch: Batch, config: GPT2Config, *, stacked: bool, segments: int
) -> Array:
    """[B, M, K] `class_sums` of packed rows, per segment: entry [b, s, k] sums the weighted
    tokens of segment s + 1 of row b (segment ids 1..M; M = `segments` bounds them, and lets a
    row take cuDNN's packed kernel, `model.gpt2.attention_cudnn_packed`)."""
    lp = class_token_log_probs(
        params,
        batch,
        config.replace(max_segments=segments),
        stacked=stacked,
        packed=True,
        chunk=config.head_chunk,
    )
    hot = jax.nn.one_hot(batch["segment_ids"] - 1, segments, dtype=jnp.float32)  # 0: none
    return jnp.einsum(
        "krt,rtm->rmk", weighted(lp, batch["weights"]), hot, precision=jax.lax.Precision.HIGHEST
    )  # (HIGHEST: no TF32 rounding of the log-probabilities on GPU)


def class_token_values(params: dict, batch: Batch, config: GPT2Config, *, stacked: bool) -> Array:
    """[B, T, K] weighted per-token log-probabilities of every class (0 at weight 0): the terms
    `class_sums` adds up, which an explanation of a decision shows token by token."""
    lp = class_token_log_probs(params, batch, config, stacked=stacked, chunk=config.head_chunk)
    return jnp.moveaxis(weighted(lp, batch["weights"]), 0, -1)


def head_logits(
    params: dict,
    batch: Batch,
    config: GPT2Config,
    rng: Array | None,
    pool: str,
    embed_delta: Array | None = None,
) -> Array:
    """[B, K] logits of the discriminative baseline's classification head over pooled features
    of right-padded rows: 'mean' over the text's positions (weight > 0), or 'last' (the last of
    them, which has read the whole text). `params` = {'body': GPT-2, 'head': {kernel, bias}}.
    `embed_delta` [B, T, D]: added to the input token embeddings (adversarial training)."""
    hidden = apply(
        params["body"],
        batch["inputs"],
        config,
        batch.get("positions"),
        dropout_rng=rng,
        return_hidden=True,
        embed_delta=embed_delta,
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


def head_log_posteriors(params: dict, batch: Batch, config: GPT2Config, *, pool: str) -> Array:
    """[B, K] log-softmax of the classification head: a discriminative run's scores."""
    return jax.nn.log_softmax(head_logits(params, batch, config, None, pool), axis=-1)


# --- texts that fit the context, for users' own JAX code ---------------------------------------


def shift_right(tokens: Array, mask: Array, bos_id: int) -> tuple[Array, Array, Array]:
    """Model inputs that predict `tokens`: the previous scored token, or BOS at a text's start.

    Returns (inputs, positions, segment_ids). Works for right- or left-padded rows; `mask`
    must mark one contiguous run per row.
    """
    mask = mask.astype(bool)
    bos = jnp.full_like(tokens[:, :1], bos_id)
    prev_tokens = jnp.concatenate([bos, tokens[:, :-1]], axis=1)
    prev_mask = jnp.concatenate([jnp.zeros_like(mask[:, :1]), mask[:, :-1]], axis=1)
    inputs = jnp.where(prev_mask, prev_tokens, bos_id)
    positions = jnp.maximum(jnp.cumsum(mask, axis=1, dtype=jnp.int32) - 1, 0)
    return inputs, positions, mask.astype(jnp.int32)


def sequence_log_likelihood(params: dict, tokens: Array, mask: Array, config: GPT2Config) -> Array:
    """[B, T] tokens and mask (1 = text, 0 = padding) -> [B] float32 sum of log p(x_t | x_<t),
    the first token conditioned on BOS (`config.bos_token_id`), so every text token is
    scored."""
    inputs, positions, segment_ids = shift_right(tokens, mask, config.bos_token_id)
    batch = dict(inputs=inputs, targets=tokens, positions=positions, segment_ids=segment_ids)
    lp = token_log_probs(params, batch, config, packed=True, chunk=config.head_chunk)
    return jnp.sum(weighted(lp, mask), axis=-1)


def class_log_likelihoods(
    stacked_params: dict, tokens: Array, mask: Array, config: GPT2Config
) -> Array:
    """K class models (parameters stacked on axis 0) -> [B, K] log p(text | class)."""
    per_class = jax.vmap(sequence_log_likelihood, in_axes=(0, None, None, None))(
        stacked_params, tokens, mask, config
    )
    return per_class.T


def append_token(tokens: Array, mask: Array, token_id: int) -> tuple[Array, Array]:
    """Right-padded [B, T] rows -> [B, T+1] rows with `token_id` right after each row's text:
    the EOS the training rows end every text with (`data.append_eos`)."""
    mask = mask.astype(jnp.int32)
    tokens, mask = jnp.pad(tokens, ((0, 0), (0, 1))), jnp.pad(mask, ((0, 0), (0, 1)))
    at = jnp.arange(tokens.shape[1])[None, :] == jnp.sum(mask, axis=1, keepdims=True)
    return jnp.where(at, token_id, tokens), jnp.where(at, 1, mask)


def prefixed_rows(tokens: Array, mask: Array, prefixes: Sequence[Sequence[int]], bos_id: int):
    """[K, B, P + T] rows of right-padded texts, slice k = BOS + prefixes[k] + text (the first
    row `data.rows.make_rows` makes with a prefix), every slice right-padded to the longest
    prefix P: the prefix conditions and is not scored (weight 0)."""
    b, p = tokens.shape[0], max(len(q) for q in prefixes)
    real = mask.astype(bool)
    slices = []
    for q in prefixes:
        q = jnp.asarray(q, jnp.int32)
        targets = jnp.concatenate(
            [
                jnp.broadcast_to(q, (b, len(q))),
                jnp.where(real, tokens, -1).astype(jnp.int32),
                jnp.full((b, p - len(q)), -1, jnp.int32),
            ],
            axis=1,
        )
        inputs = jnp.concatenate(
            [jnp.full((b, 1), bos_id, jnp.int32), jnp.maximum(targets[:, :-1], 0)], axis=1
        )
        weights = jnp.concatenate(
            [
                jnp.zeros((b, len(q)), jnp.float32),
                real.astype(jnp.float32),
                jnp.zeros((b, p - len(q)), jnp.float32),
            ],
            axis=1,
        )
        slices.append(dict(inputs=inputs, targets=targets, weights=weights))
    return {k: jnp.stack([s[k] for s in slices]) for k in slices[0]}


def score_texts(
    params,
    tokens: Array,
    mask: Array,
    *,
    config: GPT2Config,
    eos_id: int | None,
    prefixes: tuple[tuple[int, ...], ...] | None,
    max_len: int,
) -> Array:
    """[B, K] log p(text | class) of right-padded text tokens, under a run's conventions: BOS
    (`config.bos_token_id`), EOS appended (`eos_id`, when the run appends one), then the K
    stacked class models (`prefixes` None) or the one model conditioned on each class's label
    prefix. Texts must fit the run's rows (`max_len`, its data.max_len, with the EOS and the
    longest prefix): what the run scores of a longer one depends on eval.long_text (a truncated
    part, windows) and the model never read past max_len, so a wider batch is a ValueError."""
    width = (
        tokens.shape[1] + (eos_id is not None) + max((len(p) for p in prefixes or ()), default=0)
    )
    if width > max_len:
        raise ValueError(
            f"tokens of width {tokens.shape[1]} need {width} positions with the run's EOS and "
            f"label prefix, more than its rows' {max_len} (data.max_len); score longer texts "
            "with log_likelihoods(), which eval.long_text truncates or windows"
        )
    if eos_id is not None:
        tokens, mask = append_token(tokens, mask, eos_id)
    if prefixes is None:
        return class_log_likelihoods(params, tokens, mask, config)
    rows = prefixed_rows(tokens, mask, prefixes, config.bos_token_id)
    return class_sums(params, rows, config, stacked=False)


def stack_params(params_per_class: Sequence[dict]) -> dict:
    """[params_0, ..., params_{K-1}] -> one tree with a leading class axis."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *params_per_class)
