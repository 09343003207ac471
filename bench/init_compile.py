"""What compiling the random init costs: flax's init through the configured forward pass (the
attention, every layer unrolled, 8 tokens: `init_params` before 2026-11-30) against
`gpt2.init_params` (the cheapest pass with the same parameter layout), each in a fresh process
with no compile cache, and whether their parameters are equal.

    python bench/init_compile.py --size gpt2            # this machine's default device
    python bench/init_compile.py --size gpt2 --attention cudnn   # on the GPU
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time


def one(way: str, size: str, attention: str, out: str) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from gencls_jax.model import gpt2 as M

    c = M.config_for(size, dtype="bfloat16", attention=attention)
    if way == "full":
        f = jax.jit(lambda s: M.GPT2(c).init(jax.random.key(s), jnp.zeros((1, 8), jnp.int32)))
        t0 = time.perf_counter()
        comp = f.lower(0).compile()
    else:
        t0 = time.perf_counter()
        comp = M._init_params.lower(M.init_config(c), 0).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    p = jax.block_until_ready(comp(0))
    run_s = time.perf_counter() - t0
    p = p["params"] if way == "full" else p
    leaves = jax.tree_util.tree_flatten_with_path(p)[0]
    np.savez(out, **{jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves})
    print(f"{way}: compile {compile_s:.2f} s, run {run_s:.2f} s ({jax.devices()[0].device_kind})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="gpt2")
    ap.add_argument("--attention", default="xla")
    ap.add_argument("--way", default="", help=argparse.SUPPRESS)  # the child process
    ap.add_argument("--npz", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.way:
        return one(args.way, args.size, args.attention, args.npz)
    import tempfile

    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        for way in ("full", "cheap"):
            cmd = [sys.executable, __file__, "--size", args.size, "--attention", args.attention]
            subprocess.run(cmd + ["--way", way, "--npz", f"{tmp}/{way}.npz"], check=True)
        a, b = np.load(f"{tmp}/full.npz"), np.load(f"{tmp}/cheap.npz")
        assert sorted(a.files) == sorted(b.files), "different parameter trees"
        diff = max(float(np.abs(a[k] - b[k]).max()) for k in a.files)
        print(f"parameters: {len(a.files)} leaves, max |full - cheap| {diff:.3g}")


if __name__ == "__main__":
    main()
