"""XLA compilations and wall time of making a fresh gpt2 train state, op by op (before) or as
one jitted program (`loop._fresh_state`), 2026-11-30, this CPU:

    python bench/results/2026-11-30_h200_session7/init_programs/count_init.py old|new EMA_DECAY

"old" replays the code before (a copy per leaf, `init_state`, `device_put`).
"""

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from gencls_jax import config_keys  # noqa: E402
from gencls_jax.model import gpt2  # noqa: E402
from gencls_jax.reports.phases import compile_counts  # noqa: E402
from gencls_jax.system import sharding  # noqa: E402
from gencls_jax.training import loop, optim  # noqa: E402
from gencls_jax.training import step as ts  # noqa: E402


def main(which: str, ema: float) -> None:
    c = config_keys.defaults()
    c.train.ema_decay = ema
    mc = gpt2.config_for("gpt2", vocab_size=50257, n_positions=1024)
    params = jax.block_until_ready(gpt2.init_params(mc, 0))
    tc, mesh = c.train, sharding.make_mesh(1)
    tx = optim.make_optimizer(tc)
    c0, t0 = compile_counts(), time.perf_counter()
    if which == "old":
        p = jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), params)
        state = ts.init_state(p, tx, tc, 0, None)
        state = jax.device_put(state, sharding.state_shardings(mesh, state, False, False))
    else:
        state = loop._fresh_state(params, tx, tc, 0, None, mesh)
    jax.block_until_ready(state)
    c1 = compile_counts()
    print(
        f"{which} ema_decay={ema:g}: {c1['compiles'] - c0['compiles']} compilations, "
        f"{c1['compile_s'] - c0['compile_s']:.2f} s compiling, {time.perf_counter() - t0:.2f} s"
    )


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
