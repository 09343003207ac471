"""Where a scoring call's time goes: one compiled call per bucket shape, K class models stacked.

    python bench/profile_score.py                                   # gpt2, H100
    # CPU smoke:
    python bench/profile_score.py --size tiny --max-len 256 --buckets 64,128,256 --iters 2

For each bucket length T the call scores batch_size * max_len // T rows (the token budget of
`data.batching.scoring_batches`) against --classes random-init models, and prints the compile
time, ms per call, token-forwards/s (rows x T x K) and model TFLOP/s (2 x params per token plus
causal attention 2 x layers x T x d, i.e. the forward third of bench_train_step's count).
Variants:
  fused   -- what `batch_scoring` runs: `score.class_row_log_likelihoods` (chunked fused head)
  plain   -- the same body, head = float32 logits of the whole batch -> `head.token_log_probs`
  nohead  -- the body alone (sum of the final hidden states): the head's share is fused - nohead
  packed  -- T = max_len only: rows packed with several texts (~300 tokens each, segment ids:
             the masked attention path) instead of right-padded rows
  lp      -- T = max_len only: what a label-prefix pass of `decision.py` runs
             (`score.class_segment_sums`, eval.pack_texts=16): ONE model, packed rows of
             ~300-token texts through cuDNN's offsets kernel; its token-forwards count 1 model
  <v>8    -- variant v with the body's nn.Dense matmuls in float8 (`fp8_dense.py`: delayed
             scaling's casts and amaxes, constant scales: a timing, not a recipe), e.g. fused8
`--profile T` traces the call of each of --profile-variants (default fused) at bucket T and
prints its top GPU kernels.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
from fp8_dense import dense_in_fp8


def build(variant: str, config):

    import jax
    import jax.numpy as jnp

    from gencls_jax.model import gpt2 as M
    from gencls_jax.model import head as H
    from gencls_jax.scoring import score as S

    def plain(p, inputs, targets, weights):
        ll = H.token_log_probs(M.apply(p, inputs, config), jnp.maximum(targets, 0))
        return jnp.sum(jnp.where(targets >= 0, ll * weights, 0.0), -1)

    def nohead(p, inputs, targets, weights):
        return jnp.sum(M.apply(p, inputs, config, return_hidden=True).astype(jnp.float32), (-1, -2))

    def packed(p, inputs, targets, weights):
        t = inputs.shape[1]
        seg = jnp.minimum(jnp.arange(t) // 300 + 1, 99)[None].repeat(inputs.shape[0], 0)
        pos = (jnp.arange(t) % 300)[None].repeat(inputs.shape[0], 0)
        h = M.apply(p, inputs, config, pos, seg, return_hidden=True)
        ll = H.chunked_token_log_probs(
            h, p["wte"]["embedding"], targets, config.compute_dtype, config.head_chunk
        )
        return jnp.sum(ll * weights, -1)

    if variant == "lp":  # one label-prefix class pass, packed (`run_passes`, decision.py)

        def lp(p, inputs, targets, weights):
            t = inputs.shape[1]
            seg = jnp.minimum(jnp.arange(t) // 300 + 1, 16)[None].repeat(inputs.shape[0], 0)
            pos = (jnp.arange(t) % 300)[None].repeat(inputs.shape[0], 0)
            batch = dict(
                inputs=inputs, targets=targets, weights=weights, positions=pos, segment_ids=seg
            )
            return S.class_segment_sums(p, batch, config, stacked=False, segments=16)

        return jax.jit(lp)
    if variant == "fused":  # the scorer eval runs (`scoring.score.class_sums`)

        def fused(params, inputs, targets, weights):
            batch = dict(inputs=inputs, targets=targets, weights=weights)
            return S.class_sums(params, batch, config, stacked=True)

        return jax.jit(fused)
    one = dict(plain=plain, nohead=nohead, packed=packed)[variant]
    return jax.jit(jax.vmap(one, in_axes=(0, None, None, None)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="gpt2")
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument(
        "--batch-size", type=int, default=32, help="rows per call at max-len (eval.batch_size)"
    )
    ap.add_argument("--buckets", default="128,192,256,320,384,512,640,768,1024")
    ap.add_argument("--variants", default="fused,plain,nohead,packed")
    ap.add_argument("--classes", type=int, default=2)
    ap.add_argument("--head-chunk", type=int, default=8192)
    ap.add_argument(
        "--scoring-head",
        default="xla",
        choices=("xla", "pallas"),
        help="model.scoring_head of the fused variant (pallas: the kernel at its default tiles)",
    )
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument(
        "--profile", type=int, default=0, help="trace the fused call at this bucket (0 = none)"
    )
    ap.add_argument(
        "--profile-variants", default="fused", help="which variants --profile traces (comma list)"
    )
    ap.add_argument("--trace-dir", default="/tmp/gencls_score_trace")
    args = ap.parse_args()
    import jax

    from gencls_jax.model import gpt2 as M
    from gencls_jax.scoring.score import stack_params

    attention = "cudnn" if jax.default_backend() == "gpu" else "xla"
    config = M.config_for(
        args.size,
        dtype="bfloat16",
        dropout=0.0,
        attention=attention,
        n_positions=max(args.max_len, M.SIZES[args.size].get("n_positions", 1024)),
        head_chunk=args.head_chunk,
        scoring_head=args.scoring_head,
    )
    params = stack_params([M.init_params(config, seed=s) for s in range(args.classes)])
    n_params = M.count_params(params) // args.classes
    print(
        f"device: {jax.devices()[0].device_kind}  jax {jax.__version__}  "
        f"model {args.size} ({n_params / 1e6:.1f}M), "
        f"attention {attention}, {args.classes} classes, head chunk {args.head_chunk} tokens, "
        f"scoring head {args.scoring_head}"
    )
    print(
        f"{'variant':8s} {'T':>5s} {'rows':>5s} {'compile s':>10s} {'ms/call':>9s} "
        f"{'tok-fwd/s':>11s} {'TFLOP/s':>8s}"
    )
    rng = np.random.default_rng(0)
    for T in [int(x) for x in args.buckets.split(",")]:
        rows = max(args.batch_size * args.max_len // T, 1)
        data = []
        for _ in range(2):
            inputs = rng.integers(0, config.vocab_size, (rows, T)).astype(np.int32)
            targets = rng.integers(0, config.vocab_size, (rows, T)).astype(np.int32)
            data.append(jax.device_put((inputs, targets, np.ones((rows, T), np.float32))))
        for variant in args.variants.split(","):
            if variant in ("packed", "lp") and T != args.max_len:
                continue
            one = variant.rstrip("8") == "lp"  # one model, not the K stacked ones
            p_v = jax.tree.map(lambda a: a[0], params) if one else params
            fp8 = variant.endswith("8")
            t0 = time.perf_counter()
            with dense_in_fp8() if fp8 else contextlib.nullcontext():
                fn = build(variant[:-1] if fp8 else variant, config)
                fn = fn.lower(p_v, *data[0]).compile()
            compile_s = time.perf_counter() - t0
            fn(p_v, *data[0]).block_until_ready()
            t0 = time.perf_counter()
            for i in range(args.iters):
                out = fn(p_v, *data[i % 2])
            out.block_until_ready()
            dt = (time.perf_counter() - t0) / args.iters
            toks = rows * T * (1 if one else args.classes)
            flops = (2 * n_params + 2 * config.n_layer * T * config.n_embd) * toks
            print(
                f"{variant:8s} {T:5d} {rows:5d} {compile_s:10.1f} {dt * 1e3:9.2f} "
                f"{toks / dt:11.0f} {flops / dt / 1e12:8.1f}",
                flush=True,
            )
            if variant in args.profile_variants.split(",") and T == args.profile:
                from profile_step import top_kernels

                jax.profiler.start_trace(args.trace_dir)
                for i in range(3):
                    out = fn(p_v, *data[i % 2])
                out.block_until_ready()
                jax.profiler.stop_trace()
                top_kernels(args.trace_dir, n=20, steps=3)


if __name__ == "__main__":
    main()
