"""`reports/phases.py`: the compile figures of each phase of a run (train_summary.json's
`phases`), counted from JAX's own compile events."""

import json

import numpy as np
from conftest import run_cli

COUNTS_SCRIPT = """
import json, sys
import jax, jax.numpy as jnp
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
from gencls_jax.reports.phases import compile_counts
f = lambda x: jnp.tanh(x @ x.T).sum()
x = jnp.ones((64, 64))
before = compile_counts()
jax.jit(f)(x).block_until_ready()
cold = compile_counts()
jax.jit(lambda x: f(x))(x).block_until_ready()  # another jit object: traced again, same program
print(json.dumps([before, cold, compile_counts()]))
"""


def test_compile_counts_split_trace_lower_xla_and_the_cache(tmp_path):
    """`phases.compile_counts` (each phase's compile figures in train_summary.json): the total
    is trace + lower + XLA, a first compilation is a persistent-cache miss, the same program
    again from another jit is a hit whose read is counted. Its own process: the cache
    directory is process-wide state."""
    p = run_cli(str(tmp_path / "cache"), program=["-c", COUNTS_SCRIPT])
    assert p.returncode == 0, p.stderr[-2000:]
    before, cold, warm = json.loads(p.stdout.strip().splitlines()[-1])
    d1 = {k: cold[k] - before[k] for k in cold}
    d2 = {k: warm[k] - cold[k] for k in warm}
    for d in (d1, d2):
        assert d["compiles"] == 1, d
        assert d["trace_s"] > 0 and d["lower_s"] > 0 and d["xla_s"] > 0, d
        np.testing.assert_allclose(d["compile_s"], d["trace_s"] + d["lower_s"] + d["xla_s"])
    assert (d1["cache_misses"], d1["cache_hits"], d1["cache_read_s"]) == (1, 0, 0), d1
    assert (d2["cache_misses"], d2["cache_hits"]) == (0, 1), d2
    assert 0 < d2["cache_read_s"] <= d2["xla_s"], d2
