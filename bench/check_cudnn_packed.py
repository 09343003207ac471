"""Packed rows through cuDNN's own segment layout (ragged offsets), against the dense mask we use.

    python bench/check_cudnn_packed.py            # on a GPU: equality, then timing
    python bench/check_cudnn_packed.py --rows 16 --length 1024 --steps 20

Why: packed rows (several texts per row, `segment_ids`) reach cuDNN's flash attention with a
dense [B, H, T, T] mask (`model/gpt2.py`), so the kernel computes every block of every row and
reads the mask: the packed train step is 0.86 of the right-padded one on the H200 (BUILD_NOTES,
the fifth lease of 2026-11-30; issue 25 asks for 0.95). cuDNN also takes packed rows as
segment lengths and offsets with its padding-causal mask (`q_seqlen`/`q_offsets`, jax's
`jax._src.cudnn.fused_attention_stablehlo.dot_product_attention`: a private API; the public
`jax.nn.dot_product_attention` does not pass offsets), which skips the blocks outside each
segment as its causal kernel does. This script says whether that path (1) gives the dense
mask's outputs and gradients on the real tokens, (2) runs under `vmap` (our class axis), and
(3) how fast each is, forward + backward, beside right-padded rows (`is_causal`).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np


def packed_rows(rng, rows: int, length: int, mean: int) -> np.ndarray:
    """[rows, length] segment ids: texts of random lengths (geometric around `mean`) packed
    in order until a row is full; 0 = padding at the end of a row."""
    seg = np.zeros((rows, length), np.int32)
    for r in range(rows):
        at, s = 0, 1
        while True:
            n = int(min(rng.geometric(1.0 / mean), length))
            if at + n > length:
                break
            seg[r, at : at + n], at, s = s, at + n, s + 1
    return seg


def offsets_of(seg: np.ndarray, max_segments: int) -> tuple[np.ndarray, np.ndarray]:
    """(lengths [B, M], offsets [B, M + 1]) of each row's segments, -1 past its last: cuDNN's
    packed layout as jax's docstring gives it (3 and 2 segments of one token: offsets [[0, 1,
    2, -1], [0, 1, -1, -1]])."""
    b = seg.shape[0]
    lengths = np.full((b, max_segments), -1, np.int32)
    offsets = np.full((b, max_segments + 1), -1, np.int32)
    for r in range(b):
        ids = seg[r]
        starts = np.flatnonzero((ids > 0) & (np.r_[-1, ids[:-1]] != ids))
        ends = np.r_[starts[1:], np.flatnonzero(ids > 0)[-1] + 1] if starts.size else starts
        k = starts.size
        lengths[r, :k] = ends - starts
        offsets[r, :k] = starts  # within the row, starts only (jax's docstring example)
    return lengths, offsets


def dense(q, k, v, seg):
    mask = (seg[:, None, :, None] == seg[:, None, None, :]) & jnp.tril(
        jnp.ones((q.shape[1], q.shape[1]), bool)
    )
    mask = jnp.broadcast_to(mask, (q.shape[0], q.shape[2], q.shape[1], q.shape[1]))
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="cudnn")


def ragged(q, k, v, lengths, offsets):
    """The kernel alone, on `offsets_of`'s NumPy layout (not our `segment_layout`)."""
    from gencls_jax.model.gpt2 import cudnn_segments

    return cudnn_segments(q, k, v, lengths, offsets)


def causal(q, k, v):
    return jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="cudnn")


def timed(f, args, steps: int) -> float:
    """ms per call of forward + backward (the gradient of a weighted sum of the outputs)."""
    g = jax.jit(jax.grad(lambda *a: jnp.sum(f(*a).astype(jnp.float32) ** 2), argnums=(0, 1, 2)))
    jax.block_until_ready(g(*args))
    t = time.perf_counter()
    for _ in range(steps):
        out = g(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t) / steps * 1e3


def ours_checks(q, k, v, seg: np.ndarray, m: int) -> None:
    """Our path (`model.gpt2.attention_cudnn_packed`, what packed decision rows run) against the
    dense mask, with the last row emptied (a step's texts may leave one): outputs on real
    tokens, zeros at padding, gradients finite everywhere; then a whole gpt2 (random weights)
    on packed rows, `max_segments` against 0 (the dense mask): log-probabilities and gradients."""
    from gencls_jax.model import gpt2 as M
    from gencls_jax.scoring import score

    seg = seg.copy()
    seg[-1] = 0
    seg_j = jnp.asarray(seg)
    real = np.asarray(seg > 0)[..., None, None]
    w = jnp.asarray(real, jnp.float32)

    def err(a, b):  # on this check's real tokens (its last row is padding)
        d = np.asarray(a, np.float32) - np.asarray(b, np.float32)
        return float(np.max(np.abs(np.where(real, d, 0))))

    try:
        out = jax.jit(lambda a, b, c: M.attention_cudnn_packed(a, b, c, seg_j, m))(q, k, v)
        ref = jax.jit(dense)(q, k, v, seg_j)
        pad = float(np.max(np.abs(np.where(real, 0, np.asarray(out, np.float32)))))
        print(f"ours vs dense mask, outputs: {err(out, ref):.4f} on real tokens, {pad} at padding")

        def loss(f):
            return lambda a, b, c: jnp.sum(f(a, b, c).astype(jnp.float32) * w)

        g = jax.jit(
            jax.grad(
                loss(lambda a, b, c: M.attention_cudnn_packed(a, b, c, seg_j, m)), argnums=(0, 1, 2)
            )
        )(q, k, v)
        g_ref = jax.jit(jax.grad(loss(lambda a, b, c: dense(a, b, c, seg_j)), argnums=(0, 1, 2)))(
            q, k, v
        )
        finite = all(bool(jnp.all(jnp.isfinite(x))) for x in g)
        print(
            "ours vs dense mask, gradients: "
            + ", ".join(f"{err(a, b):.4f}" for a, b in zip(g, g_ref))
            + f"; finite everywhere: {finite}"
        )
        b, t = seg.shape
        config = M.config_for("gpt2", attention="cudnn", dtype="bfloat16", dropout=0.0)
        params = M.init_params(config)
        rng = np.random.default_rng(1)
        pos = np.zeros_like(seg)
        for r in range(b):
            for s_ in range(1, m + 1):
                at = np.flatnonzero(seg[r] == s_)
                pos[r, at] = np.arange(at.size)
        batch = dict(
            inputs=jnp.asarray(rng.integers(0, 50257, (b, t)), jnp.int32),
            targets=jnp.asarray(rng.integers(0, 50257, (b, t)), jnp.int32),
            positions=jnp.asarray(pos),
            segment_ids=seg_j,
        )
        wt = jnp.asarray(seg > 0, jnp.float32)

        def lp(p, c):
            return score.token_log_probs(p, batch, c, packed=True)

        def total(p, c):
            return jnp.sum(lp(p, c) * wt)

        ref_config = config.replace(packed_offsets_from=0)  # max_segments 0: the dense mask
        ravel = jax.flatten_util.ravel_pytree
        r = jax.jit(lp, static_argnums=1)(params, ref_config)
        gr = ravel(jax.jit(jax.grad(total), static_argnums=1)(params, ref_config))[0]
        # the noise floor: XLA's attention (the same mask, another kernel) against the same
        variants = (
            (f"max_segments={m}", ref_config.replace(max_segments=m)),
            ("xla attention", ref_config.replace(attention="xla")),
        )
        for name, c in variants:
            a = jax.jit(lp, static_argnums=1)(params, c)
            ga = ravel(jax.jit(jax.grad(total), static_argnums=1)(params, c))[0]
            lpd = float(jnp.max(jnp.abs((a - r) * wt)))
            gd = float(jnp.linalg.norm(ga - gr)) / float(jnp.linalg.norm(gr))
            print(
                f"gpt2 on packed rows, {name} vs cuDNN's dense mask: log-probs max |diff| "
                f"{lpd:.4f} (of {float(jnp.max(jnp.abs(r * wt))):.1f}); gradient |diff| / |g| "
                f"{gd:.2%}"
            )
    except Exception as e:  # noqa: BLE001
        print("ours failed:", type(e).__name__, str(e)[:400])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--mean", type=int, default=300, help="mean text length (tokens)")
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    seg = packed_rows(rng, args.rows, args.length, args.mean)
    m = int(seg.max())
    lengths, offsets = offsets_of(seg, m)
    shape = (args.rows, args.length, args.heads, args.head_dim)
    q, k, v = (jnp.asarray(rng.normal(size=shape), jnp.bfloat16) for _ in range(3))
    seg_j, len_j, off_j = jnp.asarray(seg), jnp.asarray(lengths), jnp.asarray(offsets)
    real = np.asarray(seg > 0)[..., None, None]
    print(
        f"{jax.devices()[0].device_kind}  jax {jax.__version__}  rows {args.rows} x "
        f"{args.length}, {m} segments at most per row, {real.mean():.1%} real tokens"
    )

    def err(a, b):
        return float(
            np.max(np.abs(np.where(real, np.asarray(a, np.float32) - np.asarray(b, np.float32), 0)))
        )

    ref = jax.jit(dense)(q, k, v, seg_j)
    try:
        out = jax.jit(ragged)(q, k, v, len_j, off_j)
        print(f"ragged vs dense mask, outputs: max |diff| on real tokens {err(out, ref):.4f}")
        w = jnp.asarray(real, jnp.float32)

        def loss(f, *a):
            return lambda q, k, v: jnp.sum(f(q, k, v, *a).astype(jnp.float32) * w)

        g_ref = jax.jit(jax.grad(loss(dense, seg_j), argnums=(0, 1, 2)))(q, k, v)
        g_out = jax.jit(jax.grad(loss(ragged, len_j, off_j), argnums=(0, 1, 2)))(q, k, v)
        print(
            "ragged vs dense mask, gradients dq dk dv: "
            + ", ".join(f"{err(a, b):.4f}" for a, b in zip(g_out, g_ref))
        )
    except Exception as e:  # noqa: BLE001
        print("ragged path failed:", type(e).__name__, str(e)[:300])
        out = None
    if out is not None:
        # our class axis is a vmap; its batching rule may not take [B, M] lengths, so also
        # the fold a model could do itself: [C, B, ...] -> [C * B, ...], lengths tiled
        vq, vk, vv = (jnp.stack([x, x]) for x in (q, k, v))
        for name, ax in (("shared lengths", None), ("lengths per class", 0)):
            try:
                both = jax.jit(jax.vmap(ragged, in_axes=(0, 0, 0, ax, ax)))
                la, oa = (
                    (len_j, off_j)
                    if ax is None
                    else (jnp.stack([len_j] * 2), jnp.stack([off_j] * 2))
                )
                vo = both(vq, vk, vv, la, oa)
                print(f"under vmap (2 classes, {name}): max |diff| {err(vo[1], ref):.4f}")
            except Exception as e:  # noqa: BLE001
                print(f"under vmap ({name}) failed:", type(e).__name__, str(e)[:200])
        fo = jax.jit(ragged)(
            *(x.reshape(-1, *x.shape[2:]) for x in (vq, vk, vv)),
            jnp.tile(len_j, (2, 1)),
            jnp.tile(off_j, (2, 1)),
        )
        print(f"classes folded into rows: max |diff| {err(fo[args.rows :], ref):.4f}")
    ours_checks(q, k, v, seg, m)
    print("| attention | fwd+bwd ms |")
    print("| --- | --- |")
    print(f"| right-padded rows, causal kernel | {timed(causal, (q, k, v), args.steps):.3f} |")
    masked = timed(lambda a, b, c: dense(a, b, c, seg_j), (q, k, v), args.steps)
    print(f"| packed rows, dense mask | {masked:.3f} |")
    if out is not None:
        f = lambda a, b, c: ragged(a, b, c, len_j, off_j)  # noqa: E731
        print(f"| packed rows, cuDNN offsets | {timed(f, (q, k, v), args.steps):.3f} |")


if __name__ == "__main__":
    main()
