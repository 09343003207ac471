"""log p(target) through the tied head as one GPU kernel (Pallas, Triton backend): the
[tokens, vocab] logits never leave the chip.

Why: in a scoring call the XLA head writes float32 logits (65,536 x 50,304 x 4 B = 13 GB per
1,024-token call of two class models) and reads them back for the log-sum-exp: 13.8 of a call's
44 ms on an H200, 5 ms of it the read (BUILD_NOTES, "test scoring (n24)"). Here each program
takes `block_rows` tokens, walks the vocabulary `block_vocab` rows of wte at a time, multiplies
on the tensor cores and folds the block into a running (max, sum of exp): what leaves the chip
is one float32 per token, its log-sum-exp; the target's logit is a gather and a row dot beside
it. Forward only: scoring, not training.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plt

Array = jax.Array


def _kernel(h_ref, e_ref, out_ref, *, vocab: int, block_vocab: int, block_k: int):
    """log-sum-exp over the vocabulary of one block of rows; only the last vocabulary block holds
    padding, so only it pays the mask (n32: 9.56 against 9.77 ms a call)."""
    rows, d = h_ref.shape

    def vocab_block(j, carry, masked: bool):
        m, s = carry

        def k_step(k, acc):
            hk = h_ref[:, pl.ds(k * block_k, block_k)]
            ek = e_ref[pl.ds(j * block_vocab, block_vocab), pl.ds(k * block_k, block_k)]
            return acc + plt.dot(hk, ek, trans_b=True)

        acc = jax.lax.fori_loop(
            0, d // block_k, k_step, jnp.zeros((rows, block_vocab), jnp.float32)
        )
        if masked:
            cols = j * block_vocab + jnp.arange(block_vocab)
            acc = jnp.where(cols[None, :] < vocab, acc, -jnp.inf)
        m_new = jnp.maximum(m, jnp.max(acc, axis=1))
        s = s * jnp.exp(m - m_new) + jnp.sum(jnp.exp(acc - m_new[:, None]), axis=1)
        return m_new, s

    init = (jnp.full((rows,), -jnp.inf, jnp.float32), jnp.zeros((rows,), jnp.float32))
    n_blocks = e_ref.shape[0] // block_vocab
    carry = jax.lax.fori_loop(0, n_blocks - 1, lambda j, c: vocab_block(j, c, False), init)
    m, s = vocab_block(n_blocks - 1, carry, True)
    out_ref[...] = m + jnp.log(s)


@functools.partial(
    jax.jit,
    static_argnames=(
        "block_rows",
        "block_vocab",
        "block_k",
        "num_warps",
        "num_stages",
        "interpret",
    ),
)
def fused_token_log_probs(
    hidden: Array,
    embedding: Array,
    targets: Array,
    *,
    block_rows: int,
    block_vocab: int,
    block_k: int,
    num_warps: int,
    num_stages: int,
    interpret: bool = False,
) -> Array:
    """log softmax(hidden @ embedding^T)[targets], float32: hidden [N, D] and embedding [V, D]
    in the compute dtype, targets [N] int (in [0, V)). `interpret` runs the kernel as plain JAX
    (any backend: the tests). D must be a multiple of `block_k`. The tiles are
    `model.head_tiles`: 128 tokens x 256 vocabulary rows, 8 warps, 3 stages ran 1.40x XLA's
    chunked head on an H200, 64 x 128 x 4 warps 0.98x (BUILD_NOTES, "The fused scoring head")."""
    n, d = hidden.shape
    v = embedding.shape[0]
    if d % block_k:
        raise ValueError(f"width {d} is not a multiple of block_k {block_k}")
    e = jnp.pad(embedding, ((0, -v % block_vocab), (0, 0)))
    pad = -n % block_rows
    h = jnp.pad(hidden, ((0, pad), (0, 0)))
    rows = h.shape[0]
    kernel = functools.partial(_kernel, vocab=v, block_vocab=block_vocab, block_k=block_k)
    out = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((rows,), jnp.float32),
        grid=(rows // block_rows,),
        in_specs=[
            pl.BlockSpec((block_rows, d), lambda i: (i, 0)),
            pl.BlockSpec(e.shape, lambda i: (0, 0)),
        ],
        out_specs=pl.BlockSpec((block_rows,), lambda i: (i,)),
        compiler_params=None
        if interpret
        else plt.CompilerParams(num_warps=num_warps, num_stages=num_stages),
        interpret=interpret,
        name="fused_token_log_probs",
    )(h, e)
    # the target's logit outside the kernel: a gather and a row dot (n32: 9.00 against 9.56 ms a
    # call with it inside, a compare and a sum over every [rows, vocab] block)
    target = jnp.einsum("nd,nd->n", hidden, embedding[targets], preferred_element_type=jnp.float32)
    return target - out[:n]


def fused_head_log_probs(
    hidden: Array, embedding: Array, targets: Array, dtype, tiles: tuple[int, ...]
) -> Array:
    """`head.chunked_token_log_probs` through the kernel: hidden [..., D] -> [...] float32, in
    the compute dtype `dtype`; `tiles` is `GPT2Config.tile_sizes` (rows, vocab, k, warps, stages);
    interpreted where there is no GPU (the tests)."""
    lead, d = hidden.shape[:-1], hidden.shape[-1]
    rows, vocab, k, warps, stages = tiles
    out = fused_token_log_probs(
        hidden.reshape(-1, d).astype(dtype),
        embedding.astype(dtype),
        targets.reshape(-1),
        block_rows=rows,
        block_vocab=vocab,
        block_k=k,
        num_warps=warps,
        num_stages=stages,
        interpret=jax.default_backend() != "gpu",
    )
    return out.reshape(lead)
