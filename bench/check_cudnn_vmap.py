"""Does cuDNN attention with a segment mask run under the class-axis vmap? Prints cudnn or xla.

python bench/check_cudnn_vmap.py   # on a GPU
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from gencls_jax.model import gpt2 as M
from gencls_jax.scoring.score import stack_params


def main(argv=None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    try:
        c = M.config_for("tiny", dtype="bfloat16", attention="cudnn")
        p = stack_params([M.init_params(c)] * 2)
        seg = jnp.asarray(np.repeat([[1] * 40 + [2] * 24], 4, 0), jnp.int32)
        tok = jnp.zeros((4, 64), jnp.int32)
        out = jax.jit(jax.vmap(lambda q: M.apply(q, tok, c, segment_ids=seg)))(p)
        ref = jax.vmap(lambda q: M.apply(q, tok, c.replace(attention="xla"), segment_ids=seg))(p)
        err = float(jnp.max(jnp.abs(out - ref)))
        print("cudnn" if err < 0.5 else "xla", err)
    except Exception as e:  # noqa: BLE001
        print("xla", type(e).__name__, str(e)[:200])


if __name__ == "__main__":
    main()
