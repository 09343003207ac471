"""Log-likelihood scoring: pure functions of (params, tokens, mask).

No globals, no hidden state: `config` is a frozen, hashable dataclass, so every function here
can be wrapped in `jax.jit(..., static_argnames="config")`, vmapped, or sharded by the caller.

Two levels:
- `sequence_log_likelihood(params, tokens, mask, config)`: texts that fit in the context.
  The first token of each text is conditioned on <|endoftext|> (GPT-2's BOS), so every text
  token is scored: log p(x) = sum_t log p(x_t | BOS, x_<t).
- `row_log_likelihood(params, inputs, targets, weights, config)`: explicit (input, target,
  weight) rows, which is what long texts become (`text_rows`) when they are scored in strided
  windows: each window sees up to n_positions tokens and scores only those no earlier window
  scored, the standard sliding-window perplexity recipe.
`class_log_likelihoods` adds the class axis: K models' parameters stacked on axis 0, one vmap.
`prefixed_class_log_likelihoods` is the label-prefix counterpart: one model, K prefixes, each
conditioning the text and not scored.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gencls_jax.model import GPT2Config, apply, head_log_probs

Array = jax.Array

LONG_TEXT_MODES = ("error", "truncate", "window")


def token_log_probs(logits: Array, targets: Array) -> Array:
    """log softmax(logits)[target], float32, without materialising the full log-softmax."""
    logits = logits.astype(jnp.float32)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return target_logit - jax.nn.logsumexp(logits, axis=-1)


def chunked_token_log_probs(hidden: Array, embedding: Array, targets: Array, config: GPT2Config) -> Array:
    """`token_log_probs(lm_logits(hidden), targets)` in chunks of `config.head_chunk` tokens.

    Each chunk goes through the fused head (`model.head_log_probs`: vocabulary padded to the
    matrix units' alignment, one float32 log-softmax) under a rematerialised map, so neither
    the forward nor the backward pass holds more than one chunk of logits, whatever the batch.
    """
    lead, d = hidden.shape[:-1], hidden.shape[-1]
    h, y = hidden.reshape(-1, d), targets.reshape(-1)
    n = h.shape[0]
    chunk = min(config.head_chunk, n)
    pad = (-n) % chunk
    h = jnp.pad(h, ((0, pad), (0, 0))).reshape(-1, chunk, d)
    y = jnp.pad(y, (0, pad)).reshape(-1, chunk)

    @jax.checkpoint
    def one(args):
        hc, yc = args
        return head_log_probs(hc, embedding, yc, config)

    return jax.lax.map(one, (h, y)).reshape(-1)[:n].reshape(lead)


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


def row_log_likelihood(params: dict, inputs: Array, targets: Array, weights: Array, config: GPT2Config) -> Array:
    """[B, T] rows -> [B] float32 sum_t weights_t * log p(targets_t | inputs_<=t).

    A row's real tokens are a prefix; padding is marked by target -1 (see `pad_rows`) and
    scores nothing."""
    real = targets >= 0
    # Right padding: causal masking alone keeps real tokens from seeing the padding after
    # them, so no segment ids are passed and the fast causal attention kernels apply.
    ll = _log_probs(params, inputs, jnp.maximum(targets, 0), config)
    return jnp.sum(jnp.where(real, ll * weights, 0.0), axis=-1)


def class_log_likelihoods(stacked_params: dict, tokens: Array, mask: Array, config: GPT2Config) -> Array:
    """K class models (parameters stacked on axis 0) -> [B, K] log p(text | class)."""
    per_class = jax.vmap(sequence_log_likelihood, in_axes=(0, None, None, None))(stacked_params, tokens, mask, config)
    return per_class.T


def class_row_log_likelihoods(stacked_params: dict, inputs: Array, targets: Array, weights: Array, config: GPT2Config):
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


def prefixed_log_likelihood(params: dict, tokens: Array, mask: Array, prefix: Sequence[int], config: GPT2Config) -> Array:
    """[B] log p(text | prefix) of right-padded texts: each row is BOS + prefix + text (the first
    row `text_rows` makes with a prefix); the prefix conditions and is not scored."""
    b, p = tokens.shape[0], len(prefix)
    real = mask.astype(bool)
    targets = jnp.concatenate([jnp.broadcast_to(jnp.asarray(prefix, jnp.int32), (b, p)),
                               jnp.where(real, tokens, -1).astype(jnp.int32)], axis=1)
    inputs = jnp.concatenate([jnp.full((b, 1), config.bos_token_id, jnp.int32), jnp.maximum(targets[:, :-1], 0)], axis=1)
    weights = jnp.concatenate([jnp.zeros((b, p), jnp.float32), real.astype(jnp.float32)], axis=1)
    return row_log_likelihood(params, inputs, targets, weights, config)


def prefixed_class_log_likelihoods(params: dict, tokens: Array, mask: Array, prefixes: Sequence[Sequence[int]],
                                   config: GPT2Config) -> Array:
    """One label-prefix model, class c conditioned on `prefixes[c]` -> [B, K] log p(text | class)."""
    return jnp.stack([prefixed_log_likelihood(params, tokens, mask, p, config) for p in prefixes], axis=1)


def stack_params(params_per_class: Sequence[dict]) -> dict:
    """[params_0, ..., params_{K-1}] -> one tree with a leading class axis."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *params_per_class)


class Rows(NamedTuple):
    """Flat scoring rows for texts of any length. `text_index[r]` says which text row r scores."""

    inputs: list[np.ndarray]
    targets: list[np.ndarray]
    weights: list[np.ndarray]
    text_index: np.ndarray


def text_rows(
    texts: Sequence[Sequence[int]],
    context: int,
    bos_id: int,
    long_text: str = "error",
    stride: int | None = None,
    prefixes: Sequence[Sequence[int]] | None = None,
) -> Rows:
    """Turn token lists into scoring rows of at most `context` text tokens.

    long_text:
      'error'    -- a text of more than `context` tokens raises ValueError naming it;
      'truncate' -- keep its first `context` tokens;
      'window'   -- strided windows: each new window advances by `stride` tokens (default
                    context // 2), keeps context - stride tokens of overlap as conditioning,
                    and scores only the new tokens. Every token is scored exactly once.
    prefixes: conditioning tokens per text (the label prefix). Every row of text i, each window
      included, then starts with BOS + prefixes[i] at weight 0, followed by up to `context` text
      tokens: a row holds len(prefixes[i]) + context tokens at most, and a window is conditioned
      on the prefix as well as on the text tokens before it.
    """
    if long_text not in LONG_TEXT_MODES:
        raise ValueError(f"long_text must be one of {LONG_TEXT_MODES}, got {long_text!r}")
    stride = stride or context // 2
    if not 0 < stride <= context:
        raise ValueError(f"stride must be in (0, {context}], got {stride}")
    inputs, targets, weights, index = [], [], [], []
    for i, text in enumerate(texts):
        t = np.asarray(text, dtype=np.int32)
        p = np.asarray(prefixes[i] if prefixes is not None else (), dtype=np.int32)
        if t.size == 0:
            raise ValueError(f"text {i} is empty: nothing to score")
        if t.size > context:
            if long_text == "error":
                raise ValueError(
                    f"text {i} has {t.size} tokens, more than the context of {context}; "
                    "set score.long_text to 'truncate' or 'window'"
                )
            if long_text == "truncate":
                t = t[:context]
        # First window: BOS + prefix + t[:context-1] predicts prefix + t[:context].
        end = min(context, t.size)
        inputs.append(np.concatenate([[bos_id], p, t[: end - 1]]).astype(np.int32))
        targets.append(np.concatenate([p, t[:end]]))
        weights.append(np.concatenate([np.zeros(p.size, np.float32), np.ones(end, np.float32)]))
        index.append(i)
        scored = end
        while scored < t.size:
            stop = min(scored + stride, t.size)
            if prefixes is None:  # window over t[start:stop]: inputs t[start:stop-1] predict t[start+1:stop]
                start = max(stop - context - 1, 0)
                inputs.append(t[start : stop - 1])
                targets.append(t[start + 1 : stop])
                w = np.zeros(stop - start - 1, np.float32)
                w[scored - start - 1 :] = 1.0
            else:  # as the first window: BOS + prefix + t[start:stop-1] predicts prefix + t[start:stop]
                start = max(stop - context, 0)
                inputs.append(np.concatenate([[bos_id], p, t[start : stop - 1]]).astype(np.int32))
                targets.append(np.concatenate([p, t[start:stop]]))
                w = np.zeros(p.size + stop - start, np.float32)
                w[p.size + scored - start :] = 1.0
            weights.append(w)
            index.append(i)
            scored = stop
    return Rows(inputs, targets, weights, np.asarray(index, np.int64))


def pad_rows(rows: Rows, idx: Sequence[int], length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows `idx` padded to `length`: padding has target -1 and weight 0."""
    n = len(idx)
    inputs = np.zeros((n, length), np.int32)
    targets = np.full((n, length), -1, np.int32)
    weights = np.zeros((n, length), np.float32)
    for j, r in enumerate(idx):
        k = len(rows.inputs[r])
        inputs[j, :k], targets[j, :k], weights[j, :k] = rows.inputs[r], rows.targets[r], rows.weights[r]
    return inputs, targets, weights
