"""Kernel variants of gencls_jax.model.head_kernel (experiment, not shipped): unrolled k loop,
mask only on the last vocabulary block, target logit outside the kernel (lse only)."""
import functools, sys, time
import numpy as np, jax, jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plt
sys.path.insert(0, ".")
from gencls_jax.model import head as H

def make(unroll, tail_mask, target_in):
    def kernel(h_ref, e_ref, y_ref, out_ref, *, vocab, bv, bk):
        rows, d = h_ref.shape
        y = y_ref[...]
        def block(j, carry, masked):
            m, s, t = carry
            def k_step(k, acc):
                return acc + plt.dot(h_ref[:, pl.ds(k * bk, bk)], e_ref[pl.ds(j * bv, bv), pl.ds(k * bk, bk)], trans_b=True)
            acc = jax.lax.fori_loop(0, d // bk, k_step, jnp.zeros((rows, bv), jnp.float32), unroll=unroll)
            cols = j * bv + jnp.arange(bv)
            if masked:
                acc = jnp.where(cols[None, :] < vocab, acc, -jnp.inf)
            m_new = jnp.maximum(m, jnp.max(acc, axis=1))
            s = s * jnp.exp(m - m_new) + jnp.sum(jnp.exp(acc - m_new[:, None]), axis=1)
            if target_in:
                t = t + jnp.sum(jnp.where(cols[None, :] == y[:, None], acc, 0.0), axis=1)
            return m_new, s, t
        init = (jnp.full((rows,), -jnp.inf, jnp.float32), jnp.zeros((rows,), jnp.float32), jnp.zeros((rows,), jnp.float32))
        nb = e_ref.shape[0] // bv
        if tail_mask:
            c = jax.lax.fori_loop(0, nb - 1, lambda j, c: block(j, c, False), init)
            m, s, t = block(nb - 1, c, True)
        else:
            m, s, t = jax.lax.fori_loop(0, nb, lambda j, c: block(j, c, True), init)
        out_ref[...] = t - (m + jnp.log(s))

    @functools.partial(jax.jit, static_argnames=("br", "bv", "bk", "w", "st"))
    def f(hidden, emb, targets, br, bv, bk, w, st):
        n, d = hidden.shape; v = emb.shape[0]
        e = jnp.pad(emb, ((0, -v % bv), (0, 0))); pad = -n % br
        h = jnp.pad(hidden, ((0, pad), (0, 0))); y = jnp.pad(targets.astype(jnp.int32), (0, pad))
        rows = h.shape[0]
        out = pl.pallas_call(functools.partial(kernel, vocab=v, bv=bv, bk=bk),
            out_shape=jax.ShapeDtypeStruct((rows,), jnp.float32), grid=(rows // br,),
            in_specs=[pl.BlockSpec((br, d), lambda i: (i, 0)), pl.BlockSpec(e.shape, lambda i: (0, 0)), pl.BlockSpec((br,), lambda i: (i,))],
            out_specs=pl.BlockSpec((br,), lambda i: (i,)),
            compiler_params=plt.CompilerParams(num_warps=w, num_stages=st))(h, e, y)[:n]
        if not target_in:
            t = jnp.einsum("nd,nd->n", hidden, emb[targets], preferred_element_type=jnp.float32)
            out = out + t
        return out
    return f

def timed(fn, a, iters=10, reps=3):
    out = fn(*a); out.block_until_ready(); ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(iters): out = fn(*a)
        out.block_until_ready(); ts.append((time.perf_counter() - t0) / iters)
    return out, sorted(ts)[len(ts) // 2]

rng = np.random.default_rng(0); N, D, V = 65536, 768, 50257
h = jnp.asarray(rng.normal(size=(N, D)), jnp.bfloat16); e = jnp.asarray(rng.normal(size=(V, D)) * 0.05, jnp.bfloat16)
y = jnp.asarray(rng.integers(0, V, N), jnp.int32)
ref, tx = timed(jax.jit(lambda h, e, y: H.chunked_token_log_probs(h, e, y, jnp.bfloat16, 8192)), (h, e, y))
print(f"xla {tx*1e3:.3f} ms", flush=True)
for name, u, tm, ti in [("base", False, False, True), ("tailmask", False, True, True),
                        ("target_out", False, False, False), ("tailmask+target_out", False, True, False)]:
    for tiles in [(128, 256, 64, 8, 3), (128, 256, 64, 8, 4)]:
        try:
            f = make(u, tm, ti)
            out, t = timed(lambda h, e, y: f(h, e, y, *tiles), (h, e, y))
            print(f"{name:22s} {tiles} {t*1e3:.3f} ms {tx/t:.3f}x max|diff| {float(jnp.max(jnp.abs(out - ref))):.2e}", flush=True)
        except Exception as err:
            print(f"{name:22s} {tiles} failed {type(err).__name__}: {(str(err).splitlines() or [""])[0][:150]}", flush=True)
