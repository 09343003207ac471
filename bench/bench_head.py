"""The scoring head alone: XLA's chunked head against the fused Pallas kernel (and torch).

    python bench/bench_head.py                       # H200: gpt2's head, 65,536 tokens per call
    # CPU smoke (the kernel interpreted, small sizes):
    python bench/bench_head.py --tokens 256 --width 64 --vocab 1000 --configs 16,128,32,4,3 \
        --iters 1 --repeats 1

One call = log p(target) for --tokens tokens through a [vocab, width] tied head in bfloat16
(a 1,024-token scoring call of two class models is 65,536 tokens). Rows: `xla` is
`model.scoring_head=xla` (`model.head.chunked_token_log_probs`, --head-chunk tokens per chunk:
float32 logits to HBM, then the one-read log-sum-exp); `pallas R,V,K,W,S` is
`model.head_kernel` with `model.head_tiles=R,V,K,W,S` (block_rows R, block_vocab V, block_k K,
num_warps W, num_stages S; the default 128,256,64,8,3); `torch` is bf16 matmul,
float32 logits, `log_softmax` + gather in the same process. Prints ms per call (median of
--repeats timings of --iters calls), TFLOP/s of the matmul (2 x tokens x width x vocab), the
ratio to xla, and max |difference| from the xla row (nats per token).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def timed(fn, args, iters, repeats):
    out = fn(*args)
    getattr(out, "block_until_ready", lambda: None)()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            out = fn(*args)
        out.block_until_ready() if hasattr(out, "block_until_ready") else sync_torch()
        times.append((time.perf_counter() - t0) / iters)
    return out, statistics.median(times), min(times), max(times)


def sync_torch():
    import torch

    torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=65536)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--head-chunk", type=int, default=8192)
    ap.add_argument(
        "--configs",
        default="64,128,64,4,3;128,128,64,8,3;128,128,64,4,3;128,256,64,8,3;64,256,64,4,3;"
        "128,64,64,4,4",
        help="';'-separated block_rows,block_vocab,block_k,num_warps,num_stages",
    )
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp

    from gencls_jax.model import head as H
    from gencls_jax.model.head_kernel import fused_token_log_probs

    gpu = jax.default_backend() == "gpu"
    rng = np.random.default_rng(0)
    h = jnp.asarray(rng.normal(size=(args.tokens, args.width)), jnp.bfloat16)
    e = jnp.asarray(rng.normal(size=(args.vocab, args.width)) * 0.05, jnp.bfloat16)
    y = jnp.asarray(rng.integers(0, args.vocab, args.tokens), jnp.int32)
    flops = 2 * args.tokens * args.width * args.vocab
    print(
        f"device: {jax.devices()[0].device_kind}  jax {jax.__version__}  tokens {args.tokens}, "
        f"width {args.width}, vocab {args.vocab}, bfloat16"
    )
    print(
        f"{'impl':28s} {'ms/call':>9s} {'[min-max]':>17s} {'TFLOP/s':>8s} {'/ xla':>7s} "
        f"{'compile s':>10s} {'max|diff|':>10s}"
    )

    def row(name, fn, fargs, ref=None, base=None):
        t0 = time.perf_counter()
        try:
            out, med, lo, hi = timed(fn, fargs, args.iters, args.repeats)
        except Exception as err:  # a tile config Triton rejects: say so, go on
            print(f"{name:28s} failed: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
            return None, None
        first = time.perf_counter() - t0 - med * args.iters * args.repeats
        diff = "" if ref is None else f"{float(np.max(np.abs(np.asarray(out) - ref))):.2e}"
        ratio = "" if base is None else f"{base / med:.3f}x"
        print(
            f"{name:28s} {med * 1e3:9.3f} [{lo * 1e3:7.3f}-{hi * 1e3:7.3f}] "
            f"{flops / med / 1e12:8.1f} {ratio:>7s} {first:10.1f} {diff:>10s}",
            flush=True,
        )
        return np.asarray(out), med

    xla = jax.jit(lambda h, e, y: H.chunked_token_log_probs(h, e, y, jnp.bfloat16, args.head_chunk))
    ref, base = row(f"xla (chunk {args.head_chunk})", xla, (h, e, y))
    best = None
    for cfg in args.configs.split(";"):
        r, v, k, w, s = (int(x) for x in cfg.split(","))
        fn = jax.jit(
            lambda h, e, y, r=r, v=v, k=k, w=w, s=s: fused_token_log_probs(
                h,
                e,
                y,
                block_rows=r,
                block_vocab=v,
                block_k=k,
                num_warps=w,
                num_stages=s,
                interpret=not gpu,
            )
        )
        _, med = row(f"pallas {cfg}", fn, (h, e, y), ref, base)
        if med is not None and (best is None or med < best[1]):
            best = (cfg, med)
    if best:  # one line for scripts: the fastest kernel configuration and its speed-up
        print(f"best pallas: {best[0]} {best[1] * 1e3:.3f} ms speedup {base / best[1]:.3f}")
    if gpu and not args.no_torch:
        import torch

        th = torch.from_numpy(np.asarray(h.astype(jnp.float32))).cuda().bfloat16()
        te = torch.from_numpy(np.asarray(e.astype(jnp.float32))).cuda().bfloat16()
        ty = torch.from_numpy(np.asarray(y)).cuda().long()

        def peer(h, e, y, chunk=args.head_chunk):
            outs = []
            for i in range(0, h.shape[0], chunk):
                logits = (h[i : i + chunk] @ e.T).float()
                outs.append(torch.log_softmax(logits, -1).gather(1, y[i : i + chunk, None])[:, 0])
            return torch.cat(outs)

        with torch.no_grad():
            out, med, lo, hi = timed(peer, (th, te, ty), args.iters, args.repeats)
        diff = float(np.max(np.abs(out.cpu().numpy() - ref)))
        print(
            f"{'torch (same chunks)':28s} {med * 1e3:9.3f} [{lo * 1e3:7.3f}-{hi * 1e3:7.3f}] "
            f"{flops / med / 1e12:8.1f} {base / med:6.3f}x {'':>10s} {diff:10.2e}"
        )


if __name__ == "__main__":
    main()
