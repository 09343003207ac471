"""Does XLA on this GPU run float8 (e4m3) matmuls at the body's shapes faster than bfloat16?
(65,536 tokens = one scoring call of 32 x 1,024 x 2 models; gpt2's four matmuls per layer.)"""
import time
import jax, jax.numpy as jnp, numpy as np

def timed(fn, *a, iters=20, reps=3):
    out = fn(*a); out.block_until_ready(); ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(iters): out = fn(*a)
        out.block_until_ready(); ts.append((time.perf_counter() - t0) / iters)
    return sorted(ts)[1]

f8 = jnp.float8_e4m3fn
print(jax.devices()[0].device_kind, jax.__version__)
print(f"{'shape':22s} {'bf16 ms':>8s} {'TF/s':>6s} {'f8 ms':>8s} {'TF/s':>6s} {'f8+cast ms':>10s} {'TF/s':>6s}")
rng = np.random.default_rng(0)
tot = [0.0, 0.0, 0.0]
for k, n in [(768, 2304), (768, 768), (768, 3072), (3072, 768)]:
    m = 65536
    x = jnp.asarray(rng.normal(size=(m, k)), jnp.bfloat16); w = jnp.asarray(rng.normal(size=(k, n)) * 0.02, jnp.bfloat16)
    flops = 2 * m * k * n
    bf = jax.jit(lambda x, w: jnp.dot(x, w, preferred_element_type=jnp.bfloat16))
    xq, wq = x.astype(f8), (w * 50).astype(f8)
    try:
        q = jax.jit(lambda x, w: jnp.dot(x, w, preferred_element_type=jnp.bfloat16))
        tq = timed(q, xq, wq)
        # with the activation's scale and cast each call (what scoring would run)
        def qc(x, w):
            s = jnp.max(jnp.abs(x)).astype(jnp.float32) / 448.0
            xs = (x.astype(jnp.float32) / s).astype(f8)
            return (jax.lax.dot(xs, w, preferred_element_type=jnp.float32) * (s / 50)).astype(jnp.bfloat16)
        tc = timed(jax.jit(qc), x, wq)
        ref = np.asarray(bf(x, w), np.float32); got = np.asarray(jax.jit(qc)(x, wq), np.float32)
        err = float(np.abs(got - ref).max() / np.abs(ref).max())
    except Exception as e:
        print(k, n, "f8 failed", type(e).__name__, str(e)[:200]); tq = tc = float("nan"); err = float("nan")
    tb = timed(bf, x, w)
    tot[0] += tb; tot[1] += tq; tot[2] += tc
    print(f"{m}x{k}x{n:<10d} {tb*1e3:8.3f} {flops/tb/1e12:6.0f} {tq*1e3:8.3f} {flops/tq/1e12:6.0f} {tc*1e3:10.3f} {flops/tc/1e12:6.0f}  rel err {err:.3f}", flush=True)
print(f"one layer's four: bf16 {tot[0]*1e3:.3f} ms, f8 {tot[1]*1e3:.3f}, f8 with scale+cast {tot[2]*1e3:.3f}")
