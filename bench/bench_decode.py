"""Decode throughput of `gencls_jax.model.decode`: new tokens per second at a few batch sizes.

Random-init model (the speed does not depend on the weights), no EOS stopping so every row
runs the full `max_new_tokens`. The first call per batch size compiles and is reported apart.

    python bench/bench_decode.py                          # gpt2, bfloat16, batch 64 and 256
    python bench/bench_decode.py --size tiny --batch 4 16 --max-new 32 --dtype float32   # CPU smoke
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from gencls_jax.model import decode as G
from gencls_jax.model import gpt2 as M


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="gpt2", choices=sorted(M.SIZES))
    p.add_argument("--dtype", default="bfloat16", choices=sorted(M.DTYPES))
    p.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    p.add_argument("--max-new", type=int, default=256)
    p.add_argument("--prompt-len", type=int, default=1, help="prompt tokens per row (1 = BOS only)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument(
        "--repeats", type=int, default=3, help="timed runs per batch size (best is reported)"
    )
    return p.parse_args()


def main() -> None:
    a = parse_args()
    config = M.config_for(a.size, dtype=a.dtype)
    params = jax.jit(M.init_params, static_argnums=(0, 1))(config, 0)
    prompt = np.full((a.prompt_len,), config.bos_token_id, np.int32)
    sampling = dict(
        max_new_tokens=a.max_new,
        temperature=a.temperature,
        top_k=a.top_k,
        top_p=a.top_p,
        eos_id=None,
    )
    print(
        f"device: {jax.devices()[0].device_kind} | model: {a.size} {a.dtype} | "
        f"prompt {a.prompt_len} + {a.max_new} new | "
        f"T={a.temperature} top_k={a.top_k} top_p={a.top_p}"
    )
    print(f"{'batch':>6} {'compile+run s':>14} {'run s':>8} {'ms/step':>8} {'tokens/s':>10}")
    for b in a.batch:
        t0 = time.perf_counter()
        jax.block_until_ready(
            G.generate(params, config, prompt, rng=0, batch_size=b, **sampling).tokens
        )
        first = time.perf_counter() - t0
        runs = []
        for r in range(a.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(
                G.generate(params, config, prompt, rng=r + 1, batch_size=b, **sampling).tokens
            )
            runs.append(time.perf_counter() - t0)
        best = min(runs)
        print(
            f"{b:>6} {first:>14.2f} {best:>8.3f} "
            f"{1e3 * best / a.max_new:>8.2f} {b * a.max_new / best:>10.0f}"
        )


if __name__ == "__main__":
    main()
