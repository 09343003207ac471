"""Float8 matmuls for the transformer body's `nn.Dense` layers, to time a train step with them
(bench only: `profile_step.py --ablations fp8`; not a numerics recipe).

What it models: delayed scaling (Transformer Engine's default), where each tensor is cast with a
scale fixed ahead (last step's amax) and this step's amax is reduced beside the cast for the
next step, so the cast can fuse into the op that produces the tensor. Forward: activations and
weights in e4m3, bfloat16 out; backward: the output gradient in e5m2, dx bfloat16 out, dW
accumulated in float32 and returned in the operands' dtype. The scales here are constants (1
for activations and weights, 2^16 for gradients): the timing does not depend on their values,
the numbers do (gradients far from the scale's range saturate or underflow), so a run with it
measures speed only. The amaxes are kept alive (added as 0 x amax) so XLA cannot drop their
reductions.
"""

from __future__ import annotations

import contextlib
import types

import jax
import jax.numpy as jnp

E4M3, E5M2 = jnp.float8_e4m3fn, jnp.float8_e5m2
GRAD_SCALE = 2.0**16


def _cast(a, dtype, scale):
    """(a x scale saturated to dtype's range, as dtype; max |a| in float32)."""
    big = float(jnp.finfo(dtype).max)
    q = jnp.clip(a.astype(jnp.float32) * scale, -big, big).astype(dtype)
    return q, jnp.max(jnp.abs(a)).astype(jnp.float32)


@jax.custom_vjp
def fp8_matmul(x, w):
    """x [..., K] @ w [K, N] through float8 operands, x's dtype out."""
    return _fwd(x, w)[0]


def _fwd(x, w):
    xq, ax = _cast(x, E4M3, 1.0)
    wq, aw = _cast(w, E4M3, 1.0)
    y = jax.lax.dot_general(
        xq, wq, (((x.ndim - 1,), (0,)), ((), ())), preferred_element_type=x.dtype
    )
    return y + (0 * (ax + aw)).astype(y.dtype), (xq, wq)


def _bwd(res, g):
    xq, wq = res
    gq, ag = _cast(g, E5M2, GRAD_SCALE)
    inv = 1.0 / GRAD_SCALE
    dx = jax.lax.dot_general(
        gq, wq, (((g.ndim - 1,), (1,)), ((), ())), preferred_element_type=g.dtype
    )
    x2, g2 = xq.reshape(-1, xq.shape[-1]), gq.reshape(-1, gq.shape[-1])
    dw = jax.lax.dot_general(x2, g2, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
    dx = (dx.astype(jnp.float32) * inv + 0 * ag).astype(g.dtype)
    return dx, (dw * inv).astype(g.dtype)


fp8_matmul.defvjp(_fwd, _bwd)


def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """`lax.dot_general` with nn.Dense's contraction (lhs's last axis, rhs's first) in float8."""
    (lc, rc), (lb, rb) = dimension_numbers
    if tuple(lc) == (lhs.ndim - 1,) and tuple(rc) == (0,) and not lb and not rb and rhs.ndim == 2:
        return fp8_matmul(lhs, rhs)
    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision, preferred_element_type)


@contextlib.contextmanager
def dense_in_fp8():
    """Every `nn.Dense` traced inside the block multiplies in float8 (flax's linear module reads
    `lax.dot_general` at call time)."""
    from flax.linen import linear

    saved = linear.lax
    linear.lax = types.SimpleNamespace(**{**vars(jax.lax), "dot_general": dot_general})
    try:
        yield
    finally:
        linear.lax = saved
