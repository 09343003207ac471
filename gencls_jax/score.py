"""Log-likelihood scoring: pure functions of (params, tokens, mask).

No globals, no hidden state: `config` is a frozen, hashable dataclass, so every function here
can be wrapped in `jax.jit(..., static_argnames="config")`, vmapped, or sharded by the caller.

Two levels:
- `sequence_log_likelihood(params, tokens, mask, config)`: texts that fit in the context.
  The first token of each text is conditioned on <|endoftext|> (GPT-2's BOS), so every text
  token is scored: log p(x) = sum_t log p(x_t | BOS, x_<t).
- `row_log_likelihood(params, inputs, targets, weights, config)`: explicit (input, target, weight)
  rows, which is what long texts become (`data.rows.make_rows`) when they are scored in strided
  windows: each window sees up to n_positions tokens and scores only those no earlier window scored,
  the standard sliding-window perplexity recipe.
`class_log_likelihoods` adds the class axis: K models' parameters stacked on axis 0, one vmap.
`prefixed_class_log_likelihoods` is the label-prefix counterpart: one model, K prefixes, each
conditioning the text and not scored. `row_token_log_probs` keeps the per-token terms (unsummed)
of `row_log_likelihood`: what an explanation of a decision shows.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from gencls_jax.head import chunked_token_log_probs
from gencls_jax.model import GPT2Config, apply

Array = jax.Array


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
    """[B, T] tokens and mask (1 = text, 0 = padding) -> [B] float32 sum of log p(x_t | x_<t)."""
    inputs, positions, segment_ids = shift_right(tokens, mask, config.bos_token_id)
    ll = _log_probs(params, inputs, tokens, config, positions, segment_ids)
    return jnp.sum(jnp.where(mask.astype(bool), ll, 0.0), axis=-1)


def _log_probs(params, inputs, targets, config, positions=None, segment_ids=None):
    """Per-token log p through the chunked head: a scoring batch never holds [B, T, V] logits."""
    hidden = apply(params, inputs, config, positions, segment_ids, return_hidden=True)
    return chunked_token_log_probs(hidden, params["wte"]["embedding"], targets, config)


def row_log_likelihood(
    params: dict, inputs: Array, targets: Array, weights: Array, config: GPT2Config
) -> Array:
    """[B, T] rows -> [B] float32 sum_t weights_t * log p(targets_t | inputs_<=t).

    A row's real tokens are a prefix; padding (weight 0, any target) scores nothing."""
    # Right padding: causal masking alone keeps real tokens from seeing the padding after
    # them, so no segment ids are passed and the fast causal attention kernels apply.
    ll = _log_probs(params, inputs, jnp.maximum(targets, 0), config)
    return jnp.sum(jnp.where(weights != 0, ll * weights, 0.0), axis=-1)


def row_token_log_probs(
    params: dict, inputs: Array, targets: Array, weights: Array, config: GPT2Config
) -> Array:
    """[B, T] rows -> [B, T] float32 weights_t * log p(targets_t | inputs_<=t), 0 where the weight
    is 0 (padding, a label prefix, a window's overlap): the per-token terms `row_log_likelihood`
    sums, which the explanation of a decision shows token by token."""
    ll = _log_probs(params, inputs, jnp.maximum(targets, 0), config)
    return jnp.where(weights != 0, ll * weights, 0.0)


def class_row_token_log_probs(
    stacked_params: dict, inputs: Array, targets: Array, weights: Array, config: GPT2Config
) -> Array:
    """`row_token_log_probs` of K stacked class models -> [B, T, K]."""
    f = jax.vmap(row_token_log_probs, in_axes=(0, None, None, None, None))
    return jnp.moveaxis(f(stacked_params, inputs, targets, weights, config), 0, -1)


def class_log_likelihoods(
    stacked_params: dict, tokens: Array, mask: Array, config: GPT2Config
) -> Array:
    """K class models (parameters stacked on axis 0) -> [B, K] log p(text | class)."""
    per_class = jax.vmap(sequence_log_likelihood, in_axes=(0, None, None, None))(
        stacked_params, tokens, mask, config
    )
    return per_class.T


def class_row_log_likelihoods(
    stacked_params: dict, inputs: Array, targets: Array, weights: Array, config: GPT2Config
):
    """`row_log_likelihood` over the class axis -> [B, K]."""
    f = jax.vmap(row_log_likelihood, in_axes=(0, None, None, None, None))
    return f(stacked_params, inputs, targets, weights, config).T


def append_token(tokens: Array, mask: Array, token_id: int) -> tuple[Array, Array]:
    """Right-padded [B, T] rows -> [B, T+1] rows with `token_id` right after each row's text:
    the EOS the training rows end every text with (`data.append_eos`)."""
    mask = mask.astype(jnp.int32)
    tokens, mask = jnp.pad(tokens, ((0, 0), (0, 1))), jnp.pad(mask, ((0, 0), (0, 1)))
    at = jnp.arange(tokens.shape[1])[None, :] == jnp.sum(mask, axis=1, keepdims=True)
    return jnp.where(at, token_id, tokens), jnp.where(at, 1, mask)


def prefixed_log_likelihood(
    params: dict, tokens: Array, mask: Array, prefix: Sequence[int], config: GPT2Config
) -> Array:
    """[B] log p(text | prefix) of right-padded texts: each row is BOS + prefix + text (the first
    row `data.rows.make_rows` makes with a prefix); the prefix conditions and is not scored."""
    b, p = tokens.shape[0], len(prefix)
    real = mask.astype(bool)
    targets = jnp.concatenate(
        [
            jnp.broadcast_to(jnp.asarray(prefix, jnp.int32), (b, p)),
            jnp.where(real, tokens, -1).astype(jnp.int32),
        ],
        axis=1,
    )
    inputs = jnp.concatenate(
        [jnp.full((b, 1), config.bos_token_id, jnp.int32), jnp.maximum(targets[:, :-1], 0)], axis=1
    )
    weights = jnp.concatenate([jnp.zeros((b, p), jnp.float32), real.astype(jnp.float32)], axis=1)
    return row_log_likelihood(params, inputs, targets, weights, config)


def prefixed_class_log_likelihoods(
    params: dict, tokens: Array, mask: Array, prefixes: Sequence[Sequence[int]], config: GPT2Config
) -> Array:
    """One label-prefix model, class c conditioned on `prefixes[c]`
    -> [B, K] log p(text | class)."""
    return jnp.stack(
        [prefixed_log_likelihood(params, tokens, mask, p, config) for p in prefixes], axis=1
    )


def score_texts(
    params,
    tokens: jax.Array,
    mask: jax.Array,
    *,
    config: GPT2Config,
    eos_id: int | None,
    prefixes: tuple[tuple[int, ...], ...] | None,
    max_len: int,
) -> jax.Array:
    """[B, K] log p(text | class) of right-padded text tokens, under a run's conventions: BOS
    (`config.bos_token_id`), EOS appended (`eos_id`, when the run appends one), then the K
    stacked class models (`prefixes` None) or the one model conditioned on each class's label
    prefix. Texts must fit the run's rows (`max_len`, its data.max_len, with the EOS and the
    longest prefix): what the run scores of a longer one depends on data.long_text (a truncated
    part, windows) and the model never read past max_len, so a wider batch is a ValueError."""
    width = (
        tokens.shape[1] + (eos_id is not None) + max((len(p) for p in prefixes or ()), default=0)
    )
    if width > max_len:
        raise ValueError(
            f"tokens of width {tokens.shape[1]} need {width} positions with the run's EOS and "
            f"label prefix, more than its rows' {max_len} (data.max_len); score longer texts "
            "with log_likelihoods(), which data.long_text truncates or windows"
        )
    if eos_id is not None:
        tokens, mask = append_token(tokens, mask, eos_id)
    if prefixes is None:
        return class_log_likelihoods(params, tokens, mask, config)
    return prefixed_class_log_likelihoods(params, tokens, mask, prefixes, config)


def stack_params(params_per_class: Sequence[dict]) -> dict:
    """[params_0, ..., params_{K-1}] -> one tree with a leading class axis."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *params_per_class)
