r"""Where does a train step's time go? Ablations plus a per-kernel profile (GPU).

    python bench/profile_step.py --batch 16 --length 1024 \
        --ablations base,rolled,packed --profile base

Ablations (model settings, one process; join with '+'):
  base      -- the defaults: layers unrolled, right-padded rows (cuDNN causal kernel), the
               fused head + log-softmax of `model.head_log_probs` (padded vocabulary)
  rolled    -- layer_unroll=1: the scan over layers as a loop
  packed    -- segment ids (packed rows): cuDNN with an explicit mask
  plainhead -- autodiff of lm_logits -> token_log_probs (the v1 head)
  chunked   -- chunked tied head + log-softmax (no [B,T,V] float32 logits)
  uN        -- layer_unroll=N: N layers per loop iteration (u1 = rolled)
  dots      -- model.remat=dots: a rolled loop that keeps only the matmuls' outputs
  full      -- model.remat=full: a rolled loop that keeps only each layer's input
  bN        -- batch N instead of --batch (e.g. b32)
  real      -- the recipes' train step (bench_train_step.real_step: training/step.py, the LM
               objective, clipping, schedule, decay mask) instead of the bare AdamW step;
               with packed: its packed rows (cuDNN's segment offsets at T >= 512)
  drop      -- with real: dropout 0.1, hashed masks (the recipes' default)
  fp8       -- the body's nn.Dense matmuls in float8 (`fp8_dense.py`: delayed scaling's
               casts and amaxes, constant scales: a timing, not a recipe)
The profile aggregates device time per kernel from a jax.profiler trace.
(v0 of this script patched jax.nn.dot_product_attention and nn.scan; its results are in
bench/results/2026-11-25_h100_profile_step_v0.log and BUILD_NOTES.md.)
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import os
import time

import numpy as np
from fp8_dense import dense_in_fp8


def number(parts, prefix, default):
    """N of an ablation part `<prefix>N` (b32: batch 32, u2: layer_unroll 2), else `default`."""
    return next((int(x[1:]) for x in parts if x[:1] == prefix and x[1:].isdigit()), default)


def build_step(size, batch, length, parts, attention):
    import jax
    import jax.numpy as jnp
    import optax

    remat = "dots" if "dots" in parts else "full" if "full" in parts else "none"
    unroll = number(parts, "u", 1 if "rolled" in parts else 0)
    if "real" in parts:
        from bench_train_step import real_step

        from gencls_jax.training.step import compiled_train_step

        compiled_train_step.cache_clear()  # memoised by settings: fp8 or not, same key
        step, state, data, _ = real_step(
            size,
            batch,
            length,
            attention,
            "packed" in parts,
            remat,
            0.1 if "drop" in parts else 0.0,
            "hash",
            dict(layer_unroll=unroll),
        )
        return step, state, data

    from gencls_jax.model import gpt2 as M
    from gencls_jax.model.head import chunked_token_log_probs, head_log_probs, token_log_probs

    config = M.config_for(
        size,
        dtype="bfloat16",
        dropout=0.0,
        attention=attention,
        layer_unroll=unroll,
        remat=remat,
    )
    packed = "packed" in parts
    seg = (
        jnp.asarray(np.minimum(np.arange(length) // 300 + 1, 99)[None].repeat(batch, 0), jnp.int32)
        if packed
        else None
    )
    params = M.init_params(config)
    opt = optax.adamw(3e-4, weight_decay=0.01)

    def loss_fn(p, tokens):
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        if "plainhead" in parts:
            lp = token_log_probs(M.apply(p, inputs, config, segment_ids=seg), targets)
        else:
            h = M.apply(p, inputs, config, segment_ids=seg, return_hidden=True)
            head = chunked_token_log_probs if "chunked" in parts else head_log_probs
            extra = (config.head_chunk,) if "chunked" in parts else ()
            lp = head(h, p["wte"]["embedding"], targets, config.compute_dtype, *extra)
        return -jnp.mean(lp)

    def step(state, tokens):
        p, o = state
        loss, g = jax.value_and_grad(loss_fn)(p, tokens)
        upd, o = opt.update(g, o, p)
        return (optax.apply_updates(p, upd), o), loss

    rng = np.random.default_rng(0)
    data = [jnp.asarray(rng.integers(0, 50257, (batch, length + 1)), jnp.int32) for _ in range(4)]
    return jax.jit(step, donate_argnums=0), (params, opt.init(params)), data


def time_steps(step, state, data, steps):
    """Seconds per step, the first call's seconds (compile + one step) and the state."""
    import jax

    t0 = time.perf_counter()
    state, out = step(state, data[0])
    jax.block_until_ready(out)
    first = time.perf_counter() - t0
    state, out = step(state, data[1])
    jax.block_until_ready(out)
    t0 = time.perf_counter()
    for i in range(steps):
        state, out = step(state, data[i % 4])
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / steps, first, state


def top_kernels(trace_dir: str, n: int = 30, steps: int = 1):
    import jax

    path = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True))[-1]
    pd = jax.profiler.ProfileData.from_file(path)
    totals = collections.Counter()
    counts = collections.Counter()
    for plane in pd.planes:
        if not plane.name.startswith("/device:GPU"):
            continue
        for line in plane.lines:
            if "Ops" in line.name or "Kernel" in line.name or "Stream" in line.name:
                for ev in line.events:
                    totals[(line.name, ev.name[:90])] += ev.duration_ns
                    counts[(line.name, ev.name[:90])] += 1
    by_line = collections.Counter()
    for (ln, _), t in totals.items():
        by_line[ln] += t
    print("device lines (ms per step):", {k: round(v / 1e6 / steps, 2) for k, v in by_line.items()})
    if not by_line:
        print(
            "no GPU lines; planes:",
            [(p.name, [pline.name for pline in p.lines][:6]) for p in pd.planes],
        )
        return
    line = max(by_line, key=lambda k: by_line[k])
    print(f"top kernels on '{line}' (ms per step, calls per step):")
    for (ln, name), t in totals.most_common():
        if ln != line:
            continue
        print(f"  {t / 1e6 / steps:8.2f}  {counts[(ln, name)] // steps:4d}  {name}")
        n -= 1
        if n == 0:
            break


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="gpt2")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--ablations", default="base,plainhead,packed,b32")
    ap.add_argument("--profile", default="base", help="ablation to profile ('' = none)")
    ap.add_argument("--attention", default="cudnn")
    ap.add_argument("--trace-dir", default="/tmp/gencls_trace")
    ap.add_argument("--top", type=int, default=30, help="kernels listed in the profile")
    args = ap.parse_args()
    import jax

    from gencls_jax.model import gpt2 as M

    c = M.config_for(args.size)
    n = M.count_params(jax.eval_shape(lambda: M.init_params(c)))
    for ab in args.ablations.split(","):
        parts = set(ab.split("+"))
        with dense_in_fp8() if "fp8" in parts else contextlib.nullcontext():
            ablation(args, ab, parts, c, n)


def ablation(args, ab, parts, c, n):
    import jax

    batch = number(parts, "b", args.batch)
    step, state, data = build_step(args.size, batch, args.length, parts, args.attention)
    dt, first, state = time_steps(step, state, data, args.steps)
    toks = batch * args.length
    flops = (6 * n + 12 * c.n_layer * args.length * c.n_embd) * toks
    print(
        f"{ab:28s} step {dt * 1e3:7.1f} ms  {toks / dt:9.0f} tok/s  "
        f"{flops / dt / 1e12:6.1f} TFLOP/s  first call {first:5.1f} s",
        flush=True,
    )
    if ab == args.profile:
        jax.profiler.start_trace(args.trace_dir)
        for i in range(3):
            state, out = step(state, data[i])
        jax.block_until_ready(out)
        jax.profiler.stop_trace()
        top_kernels(args.trace_dir, n=args.top, steps=3)


if __name__ == "__main__":
    main()
