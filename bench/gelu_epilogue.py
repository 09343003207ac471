"""Does XLA fold the MLP's bias and GELU into the cuBLASLt matmul's epilogue, and what is it worth?

    python bench/gelu_epilogue.py                      # H200: gpt2's MLP-in at a scoring call
    python bench/gelu_epilogue.py --tokens 256 --iters 2   # CPU smoke (no cuBLASLt: 'none')

One jitted `gelu(x @ W + b)` (bfloat16, gpt2's 768 -> 3,072 at a scoring call's 32 x 1,024
tokens) per way of writing it, each timed (median of --repeats x --iters calls) and its
optimized HLO searched for the matmul's epilogue (`DEFAULT`, `BIAS`, `GELU`, `BIAS_GELU`, ...).
Why: XLA's gemm rewriter matches one exact approximate-GELU graph on a cuBLASLt matmul's output
(`x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))`); under the class vmap each model
has its own bias, which the bias epilogue cannot take, and GELU stays a pass of its own
(BUILD_NOTES "why GELU stays a pass of its own in scoring"). Ways:
  jax      -- `jax.nn.gelu(approximate=True)` (what `model.gpt2.MLP` runs)
  pattern  -- the rewriter's graph written out, x * (0.5 * (1 + tanh(c * (x + k * (x * x * x)))))
  nobias   -- jax's GELU on the matmul alone, no bias (not the model's function: shows whether
              the bias is what blocks the GELU epilogue)
  vmap2    -- `jax` under a vmap over two models (stacked per_class scoring)
  none     -- the matmul and bias alone (the floor: what an epilogue GELU could reach)
  cudnn    -- `jax` as one cuDNN kernel (`jax._src.cudnn.fusion.cudnn_fusion`: XLA hands the
              matmul with its elementwise epilogue to cuDNN's runtime fusion engine)
  cudnn32  -- the same with the GELU written in float32 on the float32 product, one bf16 cast
  cudnnb   -- the matmul and bias alone as one cuDNN kernel (cuDNN's GEMM against cuBLAS's)
  pallas-BM-BN-BK-W-S -- `jax` as one Pallas (Triton) kernel of ours: tiles of BM tokens x BN
              outputs, BK-deep steps over the width, W warps, S pipeline stages; the bias and a
              float32 GELU on the accumulator before the one bfloat16 store (what a GELU
              epilogue at our own GEMM's rate gives; the GEMM alone: `pallasnone-...`)
  mlp      -- the whole MLP, `gelu(x @ W + b) @ W.T` (MLP-out's [3,072, 768] weight is W's
              transpose, its bias dropped): with `--xla_gpu_triton_gemm_any=true` XLA may fuse
              GELU into the second matmul's operand load instead (a Triton GEMM); the column
              `triton` counts the Triton GEMM fusions in the optimized HLO
"""

from __future__ import annotations

import argparse
import re
import time

import numpy as np

WAYS = ("jax", "pattern", "nobias", "vmap2", "none", "mlp", "cudnn", "cudnn32", "cudnnb")
SAME = ("pattern", "cudnn", "cudnn32", "pallas")  # ways that compute what `jax` does


def build(way: str):
    import jax
    import jax.numpy as jnp

    def pattern_gelu(x):
        c = jnp.asarray(np.sqrt(2 / np.pi), x.dtype)
        return x * (0.5 * (1 + jnp.tanh(c * (x + 0.044715 * (x * (x * x))))))

    def mlp_in(x, w, b, gelu):
        return gelu(jnp.dot(x, w) + b)

    def jax_gelu(x):
        return jax.nn.gelu(x, approximate=True)

    if way == "jax":
        return jax.jit(lambda x, w, b: mlp_in(x, w, b, jax_gelu)), 1
    if way == "pattern":
        return jax.jit(lambda x, w, b: mlp_in(x, w, b, pattern_gelu)), 1
    if way == "nobias":
        return jax.jit(lambda x, w, b: jax_gelu(jnp.dot(x, w))), 1
    if way == "vmap2":
        f = jax.vmap(lambda x, w, b: mlp_in(x, w, b, jax_gelu), in_axes=(None, 0, 0))
        return jax.jit(f), 2
    if way == "none":
        return jax.jit(lambda x, w, b: jnp.dot(x, w) + b), 1
    if way.startswith("cudnn"):
        from jax._src.cudnn.fusion import cudnn_fusion

        def f32_gelu(x, w, b):
            y = jnp.dot(x, w, preferred_element_type=jnp.float32) + b.astype(jnp.float32)
            return jax.nn.gelu(y, approximate=True).astype(x.dtype)

        f = {
            "cudnn": lambda x, w, b: mlp_in(x, w, b, jax_gelu),
            "cudnn32": f32_gelu,
            "cudnnb": lambda x, w, b: jnp.dot(x, w) + b,
        }[way]
        f.__name__ = f"gelu_{way}"
        return jax.jit(cudnn_fusion(f)), 1
    if way.startswith("pallas"):
        return pallas_mlp_in(way), 1
    if way == "mlp":
        return jax.jit(lambda x, w, b: jnp.dot(mlp_in(x, w, b, jax_gelu), w.T)), 1
    raise SystemExit(f"unknown way {way!r}: one of {WAYS}")


def pallas_mlp_in(way: str):
    """`pallas-BM-BN-BK-W-S` (GELU) or `pallasnone-...` (bias only) -> a jitted (x, w, b)."""

    import jax
    import jax.numpy as jnp
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plt

    name, *tiles = way.split("-")
    bm, bn, bk, warps, stages = (int(t) for t in tiles)
    gelu = name == "pallas"

    def kernel(x_ref, w_ref, b_ref, o_ref):
        def k_step(k, acc):
            xk = x_ref[:, pl.ds(k * bk, bk)]
            return acc + plt.dot(xk, w_ref[pl.ds(k * bk, bk), :])

        acc = jax.lax.fori_loop(0, x_ref.shape[1] // bk, k_step, jnp.zeros((bm, bn), jnp.float32))
        y = acc + b_ref[...].astype(jnp.float32)[None, :]
        o_ref[...] = (jax.nn.gelu(y, approximate=True) if gelu else y).astype(o_ref.dtype)

    @jax.jit
    def f(x, w, b):
        n, d = x.shape
        out = w.shape[1]
        interpret = jax.default_backend() != "gpu"
        return pl.pallas_call(
            kernel,
            out_shape=jax.ShapeDtypeStruct((n, out), x.dtype),
            grid=(n // bm, out // bn),
            in_specs=[
                pl.BlockSpec((bm, d), lambda i, j: (i, 0)),
                pl.BlockSpec((d, bn), lambda i, j: (0, j)),
                pl.BlockSpec((bn,), lambda i, j: (j,)),
            ],
            out_specs=pl.BlockSpec((bm, bn), lambda i, j: (i, j)),
            compiler_params=None
            if interpret
            else plt.CompilerParams(num_warps=warps, num_stages=stages),
            interpret=interpret,
        )(x, w, b)

    return f


def cudnn_fusions(hlo: str) -> int:
    """How many matmuls XLA handed to cuDNN as fusions (`__cudnn$fusion`)."""
    return len(re.findall(r'"kind":"__cudnn\$fusion"', hlo))


def epilogues(hlo: str) -> str:
    """The epilogue of every cuBLAS(Lt) call in optimized HLO text, e.g. 'BIAS_GELU'."""
    found = re.findall(r'"epilogue":"([A-Z_]+)"', hlo)
    return ",".join(found) if found else "none"


def triton_gemms(hlo: str) -> int:
    """How many Triton GEMM fusions XLA made (each may hold a matmul's fused neighbours)."""
    return len(re.findall(r'"kind":"__triton_gemm"', hlo))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=32 * 1024)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--out", type=int, default=3072)
    ap.add_argument("--ways", default=",".join(WAYS))
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dump", default="", help="write each way's optimized HLO into this folder")
    args = ap.parse_args()
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(args.tokens, args.width)), jnp.bfloat16)
    print(f"device: {jax.devices()[0].device_kind}  jax {jax.__version__}")
    print(f"x [{args.tokens}, {args.width}] @ W [{args.width}, {args.out}] + b, bfloat16")
    print(
        f"{'way':8s} {'ms/call':>8s} {'spread':>7s} {'TB/s out':>9s} {'max |d| vs jax':>15s}  "
        "triton  cudnn  epilogue"
    )
    ref = None
    for way in args.ways.split(","):
        fn, k = build(way)
        shape_w = (args.width, args.out) if k == 1 else (k, args.width, args.out)
        w = jnp.asarray(rng.normal(size=shape_w) * 0.02, jnp.bfloat16)
        b = jnp.asarray(rng.normal(size=shape_w[:-2] + (args.out,)) * 0.1, jnp.bfloat16)
        if way.startswith("cudnn") and jax.default_backend() != "gpu":
            print(f"{way:8s} (a cuDNN fusion: GPU only)", flush=True)
            continue
        try:
            compiled = fn.lower(x, w, b).compile()
        except Exception as e:  # noqa: BLE001 -- a way XLA cannot build is a row, not the end
            print(f"{way:8s} failed to compile: {str(e).splitlines()[0][:200]}", flush=True)
            continue
        hlo = compiled.as_text()
        if args.dump:
            import pathlib

            pathlib.Path(args.dump).mkdir(parents=True, exist_ok=True)
            pathlib.Path(args.dump, f"{way}.hlo.txt").write_text(hlo)
        out = compiled(x, w, b)
        out.block_until_ready()
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for _ in range(args.iters):
                out = compiled(x, w, b)
            out.block_until_ready()
            times.append((time.perf_counter() - t0) / args.iters)
        ms = float(np.median(times)) * 1e3
        spread = (max(times) - min(times)) * 1e3
        tbs = out.size * out.dtype.itemsize / (ms / 1e3) / 1e12
        diff = "-"
        if way == "jax":
            ref = (w, b, np.asarray(out, np.float32))
        elif way.split("-")[0] in SAME and ref is not None:
            diff = f"{np.max(np.abs(np.asarray(compiled(x, *ref[:2]), np.float32) - ref[2])):.3g}"
        print(
            f"{way:8s} {ms:8.3f} {spread:7.3f} {tbs:9.2f} {diff:>15s} {triton_gemms(hlo):7d} "
            f"{cudnn_fusions(hlo):6d}  {epilogues(hlo)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
