"""Data-parallel scaling of the train step on the GPUs of one host: ours (one process driving
1..N GPUs, the global batch split over the mesh's 'data' axis) beside HF PyTorch DDP (torchrun,
one process per GPU, torch.compile), in the same run.

    python bench/bench_scaling.py --gpus 1,2 --batch-per-gpu 16 --length 1024 --steps 20

Scaling efficiency = tokens/s on N GPUs / (N x tokens/s on 1 GPU), each impl against itself.
Random-init gpt2 (124M), bf16, AdamW, right-padded rows (the cuDNN causal kernel), no dropout.
Every measurement runs in its own process with CUDA_VISIBLE_DEVICES=0..N-1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent

OURS = """
import json, sys
sys.path.insert(0, {bench!r}); sys.path.insert(0, {repo!r})
import jax
from bench_train_step import bench_jax
r = bench_jax("gpt2", {batch}, {length}, {steps}, "cudnn", False)
print("RESULT " + json.dumps(dict(gpus=jax.device_count(), **r)))
"""


def visible(n: int) -> dict:
    return {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": ",".join(map(str, range(n))),
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
    }


def ours(n: int, args) -> dict:
    code = OURS.format(
        bench=str(BENCH),
        repo=str(BENCH.parent),
        batch=n * args.batch_per_gpu,
        length=args.length,
        steps=args.steps,
    )
    p = subprocess.run(
        [sys.executable, "-c", code], env=visible(n), capture_output=True, text=True, check=False
    )
    line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"ours on {n} GPUs failed: {p.stderr[-2000:]}")
    return json.loads(line[len("RESULT ") :])


def ddp(n: int, args) -> dict:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}",
        str(BENCH / "ddp_peer.py"), f"--batch={args.batch_per_gpu}", f"--length={args.length}",
        f"--steps={args.steps}", "--compile",
    ]  # fmt: skip
    p = subprocess.run(cmd, env=visible(n), capture_output=True, text=True, check=False)
    line = next((x for x in p.stdout.splitlines() if x.startswith("{")), None)
    if line is None:
        raise RuntimeError(f"DDP on {n} GPUs failed: {p.stderr[-2000:]}")
    return json.loads(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", default="1,2")
    ap.add_argument("--batch-per-gpu", type=int, default=16)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default="", help="also write the rows as JSON here")
    args = ap.parse_args()
    rows = []
    for impl, fn in (("ours (JAX, 1 process)", ours), ("HF torch DDP + compile", ddp)):
        base = None
        for n in map(int, args.gpus.split(",")):
            try:
                r = fn(n, args)
            except RuntimeError as e:
                print(e)
                continue
            base = base or (r["tokens_s"] if n == 1 else None)
            eff = r["tokens_s"] / (n * base) if base else float("nan")
            rows.append(dict(r, impl=impl, gpus=n, efficiency=eff))
            print(json.dumps(rows[-1]), flush=True)
    print(
        f"\n{'impl':24s} {'GPUs':>4s} {'global batch':>12s} {'tokens/s':>10s} {'step ms':>8s} "
        f"{'scaling':>8s}"
    )
    for r in rows:
        print(
            f"{r['impl']:24s} {r['gpus']:4d} {r['gpus'] * args.batch_per_gpu:12d} "
            f"{r['tokens_s']:10.0f} {1000 * r['step_s']:8.1f} {100 * r['efficiency']:7.1f}%"
        )
    two = {r["impl"]: r for r in rows if r["gpus"] == max(map(int, args.gpus.split(",")))}
    if len(two) == 2:
        a, b = two.values()
        print(f"ours / DDP on {a['gpus']} GPUs: {a['tokens_s'] / b['tokens_s']:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
