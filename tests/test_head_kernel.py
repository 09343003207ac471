"""The fused scoring head (`model.head_kernel`, interpreted on CPU) against float64 NumPy and
Hugging Face PyTorch logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencls_jax.model.head_kernel import fused_token_log_probs
from gencls_jax.model.weights import load_pretrained
from gencls_jax.scoring import score as S

torch = pytest.importorskip("torch")
import transformers  # noqa: E402


def log_softmax_at(logits, targets):
    """float64 log softmax(logits)[targets] per row."""
    m = logits.max(-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(logits - m).sum(-1))
    return np.take_along_axis(logits, targets[..., None], -1)[..., 0] - lse


# small tiles, run as plain JAX
SMALL = dict(block_rows=16, block_vocab=128, block_k=32, num_warps=4, num_stages=3, interpret=True)


# rows and vocabulary off the block sizes (the padding paths), a vocabulary of one block (the
# loop before the masked last block runs no iteration), targets at both ends
@pytest.mark.parametrize("rows,vocab", [(37, 300), (64, 256), (16, 100)])
def test_kernel_equals_float64_log_softmax(rows, vocab):
    rng = np.random.default_rng(0)
    h = rng.normal(size=(rows, 64)).astype(np.float32)
    e = (rng.normal(size=(vocab, 64)) * 0.5).astype(np.float32)
    y = rng.integers(0, vocab, rows)
    y[:2] = [0, vocab - 1]
    out = fused_token_log_probs(jnp.asarray(h), jnp.asarray(e), jnp.asarray(y), **SMALL)
    ref = log_softmax_at(h.astype(np.float64) @ e.astype(np.float64).T, y)
    assert out.shape == (rows,) and out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), ref, rtol=0, atol=3e-5)


def test_width_off_block_k_is_refused():
    with pytest.raises(ValueError, match="not a multiple of block_k"):
        fused_token_log_probs(
            jnp.zeros((4, 48)), jnp.zeros((10, 48)), jnp.zeros(4, jnp.int32), **SMALL
        )


def test_scorer_with_the_kernel_matches_hf_float64(hf_tiny_dir):
    """`model.scoring_head='pallas'` through the scorer, two stacked class models (the kernel
    under the class vmap), against each model's float64 PyTorch log-softmax."""
    config, params = load_pretrained(hf_tiny_dir)
    config = config.replace(scoring_head="pallas")
    hf = transformers.GPT2LMHeadModel.from_pretrained(hf_tiny_dir).eval()
    other = jax.tree_util.tree_map(lambda a: a * 0.9, params)  # a second "class model"
    tokens = np.random.default_rng(1).integers(0, 999, (2, 21)).astype(np.int32)
    batch = dict(inputs=tokens[:, :-1], targets=tokens[:, 1:])
    out = S.class_token_log_probs(
        S.stack_params([params, other]), batch, config, stacked=True, chunk=config.head_chunk
    )
    xla = S.class_token_log_probs(
        S.stack_params([params, other]),
        batch,
        config.replace(scoring_head="xla"),
        stacked=True,
        chunk=config.head_chunk,
    )
    with torch.no_grad():
        logits = hf(torch.tensor(batch["inputs"], dtype=torch.long)).logits.double().numpy()
    ref = log_softmax_at(logits, batch["targets"])
    assert out.shape == (2, 2, 20)
    np.testing.assert_allclose(np.asarray(out[0]), ref, rtol=0, atol=2e-4)
    np.testing.assert_allclose(np.asarray(out[1]), np.asarray(xla[1]), rtol=0, atol=2e-5)
    assert np.max(np.abs(np.asarray(out[1]) - ref)) > 1e-2  # the second model is another model


def test_kernel_lowers_for_the_gpu_under_the_class_vmap():
    """The Pallas -> Triton lowering runs in Python, so a CPU machine catches what Triton's
    lowering rejects (shapes, ops) for gpt2's head, stacked class models and every tile size
    `bench/bench_head.py` sweeps by default."""
    h = jax.ShapeDtypeStruct((2, 4096, 768), jnp.bfloat16)
    e = jax.ShapeDtypeStruct((2, 50257, 768), jnp.bfloat16)
    y = jax.ShapeDtypeStruct((2, 4096), jnp.int32)
    for r, v, k, w, s in [(64, 128, 64, 4, 3), (128, 128, 64, 8, 3), (128, 256, 64, 8, 3)]:

        def one(h, e, y, r=r, v=v, k=k, w=w, s=s):
            return fused_token_log_probs(
                h, e, y, block_rows=r, block_vocab=v, block_k=k, num_warps=w, num_stages=s
            )

        text = jax.jit(jax.vmap(one)).trace(h, e, y).lower(lowering_platforms=("cuda",)).as_text()
        assert "triton" in text.lower()


def test_auto_scoring_head_is_the_kernel_on_hopper_only(monkeypatch):
    """'auto' picks the kernel where its tiles were measured (one sm_90 GPU), XLA's head elsewhere
    (other GPUs; several devices, where the kernel, with no sharding rule, would be gathered)."""
    from types import SimpleNamespace

    from gencls_jax import config_keys
    from gencls_jax.model import gpt2 as M

    m = config_keys.defaults().model
    assert m.scoring_head == "auto"
    assert M.resolve_config(M.GPT2Config(), m).scoring_head == "xla"  # this CPU
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    for cc, n, want in (
        ("9.0", 1, "pallas"),
        ("8.0", 1, "xla"),
        ("8.9", 1, "xla"),
        ("9.0", 2, "xla"),
    ):
        monkeypatch.setattr(jax, "device_count", lambda n=n: n)
        monkeypatch.setattr(jax, "devices", lambda cc=cc: [SimpleNamespace(compute_capability=cc)])
        assert M.resolve_config(M.GPT2Config(), m).scoring_head == want
    monkeypatch.undo()
    m.scoring_head = "pallas"
    assert M.resolve_config(M.GPT2Config(), m).scoring_head == "pallas"
