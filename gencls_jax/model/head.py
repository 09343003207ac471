"""The tied LM head: GPT-2's logits and log-probabilities, as kernels with custom gradients.

Training and scoring spend a large share of their time here (the [tokens, 50257] logits are
the largest arrays of a step), so the head is written out rather than left to autodiff:
- `lm_logits`: features @ wte^T in the compute dtype, float32 out; its backward matmuls run in
  the compute dtype too (autodiff of a float32-output einsum makes them float32, ~5x slower).
- `head_log_probs`: log p(target) fused with the log-softmax, the vocabulary padded to the
  matrix units' alignment; the backward pass reads the saved logits once.
- `chunked_token_log_probs`: `head_log_probs` over chunks of `model.head_chunk` tokens, so a
  scoring batch never holds more than one chunk of float32 logits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def lm_logits(hidden: Array, embedding: Array, dtype) -> Array:
    """Tied LM head: features @ wte^T in the compute dtype `dtype`, accumulated and returned in
    float32."""
    dt = _head_dtype(dtype)
    return _head(hidden.astype(dt), embedding.astype(dt))


def _head_dtype(dtype):
    """The tied head's matmul dtype: the compute dtype, except float16 on CPU, where XLA has no
    float16 x float16 -> float32 dot (GPUs do)."""
    return jnp.float32 if dtype == jnp.float16 and jax.default_backend() == "cpu" else dtype


@jax.custom_vjp
def _head(h: Array, e: Array) -> Array:
    return jnp.einsum("...d,vd->...v", h, e, preferred_element_type=jnp.float32)


def _head_fwd(h, e):
    return _head(h, e), (h, e)


def _head_bwd(res, g):
    """Backward matmuls in the compute dtype. Autodiff of the float32-output einsum would
    multiply the float32 logit cotangent with bfloat16 operands as float32 matmuls: on an
    H100 that made the head's two backward matmuls ~5x slower than bfloat16 ones."""
    h, e = res
    g = g.astype(h.dtype)
    dh = jnp.einsum("...v,vd->...d", g, e)
    de = jnp.einsum(
        "nv,nd->vd",
        g.reshape(-1, g.shape[-1]),
        h.reshape(-1, h.shape[-1]),
        preferred_element_type=jnp.float32,
    )
    return dh, de.astype(e.dtype)


_head.defvjp(_head_fwd, _head_bwd)


# The head's vocabulary axis is padded to a multiple of this inside `head_log_probs` (50257 ->
# 50304): an odd row length makes the [tokens, vocab] matmuls and their outputs misaligned for
# the GPU's matrix units. The parameters keep GPT-2's own shape.
VOCAB_ALIGN = 128


def head_log_probs(hidden: Array, embedding: Array, targets: Array, dtype) -> Array:
    """log p(target) through the tied head, float32: `token_log_probs(lm_logits(...), targets)`
    as one custom-VJP op, the training loss's head.

    Why: autodiff of logits -> log-softmax -> gather writes several float32 [tokens, vocab]
    arrays (softmax, a scattered one-hot, their sum); here the backward pass reads the saved
    logits once and writes the bf16 gradient of the logits once."""
    dt = _head_dtype(dtype)
    lead, d = hidden.shape[:-1], hidden.shape[-1]
    out = _head_lp(hidden.reshape(-1, d).astype(dt), embedding.astype(dt), targets.reshape(-1))
    return out.reshape(lead)


def _pad_vocab(e: Array) -> Array:
    return jnp.pad(e, ((0, -e.shape[0] % VOCAB_ALIGN), (0, 0)))


@jax.custom_vjp
def _head_lp(h: Array, e: Array, y: Array) -> Array:
    return _head_lp_fwd(h, e, y)[0]


def _head_lp_fwd(h, e, y):
    logits = jnp.einsum("nd,vd->nv", h, _pad_vocab(e), preferred_element_type=jnp.float32)
    valid = jnp.arange(logits.shape[-1]) < e.shape[0]
    lse = logsumexp_one_pass(jnp.where(valid, logits, -jnp.inf))
    target = jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]
    return target - lse, (h, e, logits, lse, y)


def _head_lp_bwd(res, ct):
    h, e, logits, lse, y = res
    cols = jnp.arange(logits.shape[-1])
    p = jnp.where(cols < e.shape[0], jnp.exp(logits - lse[:, None]), 0.0)
    # d logp / d logits
    g = (((cols == y[:, None]).astype(jnp.float32) - p) * ct[:, None]).astype(h.dtype)
    dh = g @ _pad_vocab(e)
    de = jnp.einsum("nv,nd->vd", g, h, preferred_element_type=jnp.float32)[: e.shape[0]]
    return dh, de.astype(e.dtype), None


_head_lp.defvjp(_head_lp_fwd, _head_lp_bwd)


def logsumexp_one_pass(x: Array) -> Array:
    """logsumexp over the last axis, float32, reading `x` once: one reduction that carries the
    running (max, sum of exp(x - max)) pair, where `jax.nn.logsumexp` reduces twice (the max,
    then the sum). The head's [tokens, vocab] logits are the largest arrays of a step and the
    reductions are memory-bound, so the second read of them is what this saves. -inf entries
    (the padded vocabulary) add nothing."""

    def combine(a, b):
        (m1, s1), (m2, s2) = a, b
        d = m1 - m2
        e = jnp.exp(-jnp.abs(jnp.where(jnp.isnan(d), 0.0, d)))  # both -inf: d is nan, e = 1
        return jnp.maximum(m1, m2), jnp.where(d >= 0, s1 + s2 * e, s1 * e + s2)

    x = x.astype(jnp.float32)
    init = (jnp.float32(-jnp.inf), jnp.float32(0.0))
    m, total = jax.lax.reduce((x, jnp.ones_like(x)), init, combine, (x.ndim - 1,))
    return m + jnp.log(total)


def token_log_probs(logits: Array, targets: Array) -> Array:
    """log softmax(logits)[target], float32, without materialising the full log-softmax."""
    logits = logits.astype(jnp.float32)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return target_logit - jax.nn.logsumexp(logits, axis=-1)


def chunked_token_log_probs(
    hidden: Array, embedding: Array, targets: Array, dtype, chunk: int
) -> Array:
    """`token_log_probs(lm_logits(hidden), targets)` in chunks of `chunk` tokens.

    Each chunk goes through the fused head (`model.head_log_probs`: vocabulary padded to the
    matrix units' alignment, one float32 log-softmax) under a rematerialised map, so neither
    the forward nor the backward pass holds more than one chunk of logits, whatever the batch.
    """
    lead, d = hidden.shape[:-1], hidden.shape[-1]
    h, y = hidden.reshape(-1, d), targets.reshape(-1)
    n = h.shape[0]
    chunk = min(chunk, n)
    pad = (-n) % chunk
    h = jnp.pad(h, ((0, pad), (0, 0))).reshape(-1, chunk, d)
    y = jnp.pad(y, (0, pad)).reshape(-1, chunk)

    @jax.checkpoint
    def one(args):
        hc, yc = args
        return head_log_probs(hc, embedding, yc, dtype)

    return jax.lax.map(one, (h, y)).reshape(-1)[:n].reshape(lead)
