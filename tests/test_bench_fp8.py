"""The float8 timing ablation of `bench/` measures what it says: a step built under it multiplies
in float8 (e4m3 forward, e5m2 gradients), one built outside does not, and the memoised real
step is not handed back from an earlier bfloat16 build (call 2 of 2026-12-01's third lease
timed that by mistake)."""

import contextlib
import sys

import jax
import numpy as np
import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import fp8_dense  # noqa: E402
import profile_step  # noqa: E402


def hlo(step, state, data) -> str:
    return step.lower(state, data[0]).as_text()


@pytest.mark.parametrize("kind", ["base", "real"])
def test_fp8_ablation_builds_a_float8_step(kind):
    def build(parts):
        with fp8_dense.dense_in_fp8() if "fp8" in parts else contextlib.nullcontext():
            step, state, data = profile_step.build_step("tiny", 2, 16, parts, "xla")
            return hlo(step, state, data)

    plain = build({kind})
    fp8 = build({kind, "fp8"})
    again = build({kind})
    assert "f8E4M3FN" not in plain and "f8E4M3FN" not in again
    assert "f8E4M3FN" in fp8 and "f8E5M2" in fp8


def test_fp8_matmul_is_near_the_bfloat16_matmul():
    """Values and both gradients within float8's rounding (3 and 2 mantissa bits) of the
    bfloat16 product's, for output gradients of a mean loss's size (~1e-4, inside what the
    constant gradient scale maps into e5m2's range): the timing runs the same computation."""
    x = jax.random.normal(jax.random.key(0), (4, 8, 64), np.float32).astype("bfloat16")
    w = (0.2 * jax.random.normal(jax.random.key(1), (64, 32))).astype("bfloat16")
    ct = 1e-4 * jax.random.normal(jax.random.key(2), (4, 8, 32))

    def loss(mm):
        return lambda x, w: (mm(x, w).astype(np.float32) * ct).sum()

    ref = loss(lambda a, b: a @ b)
    got = loss(fp8_dense.fp8_matmul)
    y, y_ref = np.asarray(fp8_dense.fp8_matmul(x, w), np.float32), np.asarray(x @ w, np.float32)
    assert np.linalg.norm(y - y_ref) / np.linalg.norm(y_ref) < 0.1
    for g, r in zip(jax.grad(got, (0, 1))(x, w), jax.grad(ref, (0, 1))(x, w)):
        g, r = np.asarray(g, np.float32), np.asarray(r, np.float32)
        assert np.linalg.norm(g - r) / np.linalg.norm(r) < 0.15
