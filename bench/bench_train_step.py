"""Train-step throughput: our JAX GPT-2 against Hugging Face PyTorch on the same GPU.

Random-init gpt2 (124M), bfloat16 compute, AdamW, fixed batch x length. Prints tokens/s and
MFU for each, with the GPU's bf16 matmul rate measured in the same run, and the ratios.

    python bench/bench_train_step.py --lengths 512,1024 --batch 16 --steps 20
Variants: cudnn = right-padded rows (causal kernel), cudnn+packed = packed rows (segment-id mask).
MFU counts model FLOPs: 6 * params * tokens (weights incl. the tied head) plus attention
12 * layers * T * d per token (forward+backward of QK^T and AV; causal work counted in full,
as PaLM's appendix does).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def matmul_tflops(n: int = 8192, reps: int = 20) -> float:
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.bfloat16)
    f = jax.jit(lambda a, b: a @ b)
    f(a, b).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(reps):
        out = f(a, b)
    out.block_until_ready()
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def model_flops_per_token(n_params: int, n_layer: int, d: int, t: int) -> float:
    return 6 * n_params + 12 * n_layer * t * d


def bench_jax(size: str, batch: int, length: int, steps: int, attention: str, packed: bool) -> dict:
    """Our real train step (training/step.py: AdamW, clipping, schedule, donation), one model."""
    import jax
    import ml_collections

    from configs import base
    from gencls_jax.model import gpt2 as M
    from gencls_jax.system import sharding
    from gencls_jax.training import step as T
    from gencls_jax.training.objectives import lm_objective

    c = base.get_config()
    c.train.batch_size, c.model.attention, c.model.dtype, c.model.dropout = (
        batch,
        attention,
        "bfloat16",
        0.0,
    )
    c.model.conditioning = "unconditional"
    c.data.batching = "pack" if packed else "bucket"
    config = M.resolve_config(M.config_for(size), c.model)
    params = M.init_params(config)
    mesh = sharding.make_mesh()
    tx, step = T.compiled_train_step(
        config,
        ml_collections.FrozenConfigDict(c.train),
        False,
        100_000,
        mesh,
        lm_objective(c, False),
    )
    state = jax.device_put(T.init_state(params, tx, c.train, 0, None), sharding.replicated(mesh))
    rng = np.random.default_rng(0)

    def make_batch():
        tokens = rng.integers(0, 50257, (batch, length + 1)).astype(np.int32)
        # Packed rows: texts of ~300 tokens (IMDB's mean), positions restarting per text.
        seg = np.minimum(np.arange(length) // 300 + 1, 99) if packed else np.ones(length, np.int32)
        pos = np.arange(length) - (np.arange(length) // 300) * 300 if packed else np.arange(length)
        b = dict(
            inputs=tokens[:, :-1],
            targets=tokens[:, 1:],
            weights=np.ones((batch, length), np.float32),
            positions=np.broadcast_to(pos, (batch, length)).astype(np.int32),
            segment_ids=np.broadcast_to(seg, (batch, length)).astype(np.int32),
        )
        return sharding.shard_batch(b, mesh)

    data = [make_batch() for _ in range(4)]
    for i in range(2):
        state, m = step(state, data[i])
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for i in range(steps):
        state, m = step(state, data[i % 4])
    jax.block_until_ready(m)
    dt = (time.perf_counter() - t0) / steps
    del state
    return dict(step_s=dt, tokens_s=batch * length / dt)


def bench_torch(batch: int, length: int, steps: int, compile: bool) -> dict:
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(cfg).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01, fused=True)

    def step(tokens):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(tokens, labels=tokens).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    if compile:
        step = torch.compile(step)
    data = [torch.randint(0, 50257, (batch, length), device="cuda") for _ in range(4)]
    for i in range(3):
        step(data[i % 4])
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        step(data[i % 4])
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    return dict(step_s=dt, tokens_s=batch * length / dt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="gpt2")
    ap.add_argument("--lengths", default="512,1024")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument(
        "--variants",
        default="cudnn,cudnn+packed,xla",
        help="ours: attention[+packed] (packed = segment-id mask)",
    )
    ap.add_argument(
        "--matmul-n", type=int, default=8192, help="size of the matmul that measures the peak rate"
    )
    ap.add_argument("--peers", default="eager,compile", help="PyTorch peers to run ('' for none)")
    args = ap.parse_args()

    import os
    import sys

    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # leave room for the torch peer
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/
    import jax

    print(f"device: {jax.devices()[0].device_kind}  jax {jax.__version__}")
    peak = matmul_tflops(args.matmul_n)
    print(f"measured bf16 matmul rate ({args.matmul_n}^3, jax): {peak:.0f} TFLOP/s")
    from gencls_jax.model import gpt2 as M

    cfg = M.config_for(args.size)
    n_params = M.count_params(jax.eval_shape(lambda: M.init_params(cfg)))

    def mfu(tokens_s, length):
        return (
            tokens_s
            * model_flops_per_token(n_params, cfg.n_layer, cfg.n_embd, length)
            / (peak * 1e12)
        )

    rows = []
    for length in map(int, args.lengths.split(",")):
        peer = {}
        for name in filter(None, args.peers.split(",")):
            try:
                r = bench_torch(args.batch, length, args.steps, compile=name == "compile")
                import torch

                torch.cuda.empty_cache()  # the peer's model is gone: hand its memory back for ours
                peer[name] = r["tokens_s"]
                rows.append(
                    (
                        f"HF torch {name}",
                        length,
                        r["tokens_s"],
                        mfu(r["tokens_s"], length),
                        r["step_s"],
                    )
                )
            except Exception as e:  # keep the table even if a peer fails
                print(f"torch {name} failed: {type(e).__name__}: {e}")
        for variant in args.variants.split(","):
            attention, _, packed = variant.partition("+")
            try:
                r = bench_jax(
                    args.size, args.batch, length, args.steps, attention, packed == "packed"
                )
            except Exception as e:
                print(f"jax {variant} failed: {type(e).__name__}: {str(e)[:300]}")
                continue
            rows.append(
                (
                    f"ours {variant}",
                    length,
                    r["tokens_s"],
                    mfu(r["tokens_s"], length),
                    r["step_s"],
                    peer,
                )
            )
    print(
        f"\n{'impl':24s} {'T':>5s} {'tokens/s':>10s} {'MFU':>6s} {'step ms':>8s}  "
        "vs eager  vs compile"
    )
    for row in rows:
        name, length, tps, mfu, step_s = row[:5]
        peer = row[5] if len(row) > 5 else {}
        ratios = "  ".join(
            f"{tps / peer[k]:7.2f}x" if k in peer else "      -" for k in ("eager", "compile")
        )
        print(
            f"{name:24s} {length:5d} {tps:10.0f} {100 * mfu:5.1f}% {1000 * step_s:8.1f}  {ratios}"
        )


if __name__ == "__main__":
    main()
