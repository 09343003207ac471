"""Our Flax GPT-2 against Hugging Face PyTorch GPT-2, and the model's numerics policy."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencls_jax.model import gpt2 as M
from gencls_jax.model.head import head_log_probs
from gencls_jax.model.weights import CheckpointError, load_pretrained, save_pretrained

torch = pytest.importorskip("torch")
import transformers  # noqa: E402


def hf_logits(folder, tokens):
    hf = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    with torch.no_grad():
        return hf(torch.tensor(np.asarray(tokens), dtype=torch.long)).logits.double().numpy()


def random_tokens(rng, shape, vocab=1000):
    return rng.integers(0, vocab, size=shape).astype(np.int32)


def test_logits_match_pytorch(hf_tiny_dir):
    config, params = load_pretrained(hf_tiny_dir)
    assert (config.n_layer, config.n_embd, config.vocab_size, config.n_positions) == (
        2,
        64,
        1000,
        64,
    )
    tokens = random_tokens(np.random.default_rng(0), (3, 64))
    ours = np.asarray(M.apply(params, tokens, config))
    ref = hf_logits(hf_tiny_dir, tokens)
    assert ours.dtype == np.float32
    err = np.max(np.abs(ours - ref))
    assert err < 1e-5, err


def test_save_pretrained_round_trip(hf_tiny_dir, tmp_path):
    config, params = load_pretrained(hf_tiny_dir)
    # Perturb so the round trip cannot pass by reading the original files back.
    params = jax.tree_util.tree_map(lambda x: x + 0.01, params)
    save_pretrained(config, params, tmp_path / "out")
    tokens = random_tokens(np.random.default_rng(1), (2, 40))
    ours = np.asarray(M.apply(params, tokens, config))
    ref = hf_logits(tmp_path / "out", tokens)
    assert np.max(np.abs(ours - ref)) < 1e-5
    config2, params2 = load_pretrained(tmp_path / "out")
    assert config2 == config
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, params2)


def test_pytorch_bin_fallback(hf_tiny_dir, tmp_path):
    hf = transformers.GPT2LMHeadModel.from_pretrained(hf_tiny_dir)
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text((hf_tiny_dir / "config.json").read_text())
    config, params = load_pretrained(tmp_path)
    _, ref = load_pretrained(hf_tiny_dir)
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, ref)


def test_bad_checkpoints_name_the_tensor(hf_tiny_dir, tmp_path):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(next(hf_tiny_dir.glob("*.safetensors"))))
    cfg = (hf_tiny_dir / "config.json").read_text()

    missing = tmp_path / "missing"
    missing.mkdir()
    (missing / "config.json").write_text(cfg)
    save_file(
        {k: v for k, v in tensors.items() if "h.1.mlp.c_fc.weight" not in k},
        str(missing / "model.safetensors"),
    )
    with pytest.raises(CheckpointError, match=r"h\.1\.mlp\.c_fc\.weight.*missing"):
        load_pretrained(missing)

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    c = json.loads(cfg)
    c["n_embd"] = 32  # config disagrees with the tensors
    c["n_head"] = 4
    (wrong / "config.json").write_text(json.dumps(c))
    save_file(tensors, str(wrong / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"wte\.weight.*\(1000, 64\).*\(1000, 32\)"):
        load_pretrained(wrong)

    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        load_pretrained(tmp_path / "does_not_exist" / "x")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(cfg)
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_pretrained(empty)


def test_hub_name_offline_is_one_line_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="could not fetch 'gpt2-nonexistent-xyz'"):
        load_pretrained("gpt2-nonexistent-xyz")


def test_sizes_have_published_parameter_counts():
    # GPT-2's published sizes (tied head): 124M, 355M, 774M, 1558M parameters.
    expected = {
        "gpt2": 124_439_808,
        "gpt2-medium": 354_823_168,
        "gpt2-large": 774_030_080,
        "gpt2-xl": 1_557_611_200,
    }
    for name, n in expected.items():
        c = M.config_for(name)
        shapes = jax.eval_shape(lambda c=c: M.init_params(c))
        assert M.count_params(shapes) == n, name


@pytest.mark.parametrize("dtype,tol", [("bfloat16", 0.05), ("float16", 0.01)])
def test_low_precision_close_to_float32(hf_tiny_dir, dtype, tol):
    """bfloat16 keeps 8 mantissa bits: logits agree with float32 to a few hundredths
    (relative to the logits' scale); float16 (11 bits) to about a hundredth."""
    config, params = load_pretrained(hf_tiny_dir)
    tokens = random_tokens(np.random.default_rng(2), (2, 64))
    ref = np.asarray(M.apply(params, tokens, config))
    low = M.apply(params, tokens, config.replace(dtype=dtype))
    assert low.dtype == jnp.float32  # logits always float32
    rel = np.linalg.norm(np.asarray(low) - ref) / np.linalg.norm(ref)
    assert rel < tol, rel
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(params))


def test_remat_gives_same_gradients(hf_tiny_dir):
    config, params = load_pretrained(hf_tiny_dir)
    tokens = random_tokens(np.random.default_rng(3), (2, 32))

    def loss(p, cfg):
        return jnp.mean(M.apply(p, tokens, cfg) ** 2)

    g0 = jax.grad(loss)(params, config)
    for remat in ("full", "dots"):
        g1 = jax.grad(loss)(params, config.replace(remat=remat))
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), g0, g1
        )


def test_remat_saves_memory_at_the_default_unroll():
    """The point of remat is memory: XLA's plan for a gradient must shrink with it at the
    default layer_unroll (0). It did not when 0 unrolled every layer under remat too (a
    straight-line stack recomputes early and keeps it: gpt2-medium 26.1 GiB either way on the
    H200); an explicit full unroll under remat is refused."""
    config = M.config_for("tiny").replace(n_layer=4, n_embd=128, vocab_size=512, dtype="float32")
    params = M.init_params(config)
    tokens = random_tokens(np.random.default_rng(5), (8, 256)) % config.vocab_size

    def temp_bytes(cfg):
        grad = jax.jit(jax.grad(lambda p: jnp.mean(M.apply(p, tokens, cfg) ** 2)))
        return grad.lower(params).compile().memory_analysis().temp_size_in_bytes

    none = temp_bytes(config)
    for remat in ("full", "dots"):
        assert temp_bytes(config.replace(remat=remat)) < 0.8 * none, remat
    with pytest.raises(ValueError, match="saves no memory"):
        config.replace(remat="full", layer_unroll=4)


def test_dropout_only_with_rng(hf_tiny_dir):
    config, params = load_pretrained(hf_tiny_dir)
    tokens = random_tokens(np.random.default_rng(4), (2, 16))
    a = M.apply(params, tokens, config)
    b = M.apply(params, tokens, config, dropout_rng=jax.random.key(0))
    c = M.apply(params, tokens, config, dropout_rng=jax.random.key(0))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(b, c)


def test_bad_config_values():
    with pytest.raises(ValueError, match="model.dtype"):
        M.GPT2Config(dtype="float64")
    with pytest.raises(ValueError, match="unknown model size"):
        M.config_for("gpt5")
    with pytest.raises(ValueError, match="max_segments"):
        M.GPT2Config(max_segments=-1)
    for tiles in ("128,256,64,8", "128,200,64,8,3", "128,256,64,0,3", "a,256,64,8,3"):
        with pytest.raises(ValueError, match="model.head_tiles"):
            M.GPT2Config(head_tiles=tiles)
    M.GPT2Config(head_tiles="16, 128, 32, 4, 2")  # spaces and any positive warps/stages pass


def test_segment_layout_is_cudnns_packed_layout():
    """Lengths and in-row offsets of each row's segments, -1 past its last (jax's docstring of
    cuDNN's packed layout: one-token segments give offsets [[0, 1, 2, -1], [0, 1, -1, -1]]),
    against a loop over the rows; an empty row (all padding) has none."""
    seg = np.zeros((4, 12), np.int32)
    seg[0, :3] = [1, 2, 3]
    seg[1, :2] = [1, 2]
    seg[2] = [1, 1, 1, 1, 1, 2, 2, 3, 3, 3, 3, 0]  # row 3 stays empty
    lengths, offsets = (np.asarray(a) for a in M.segment_layout(jnp.asarray(seg), 4))
    np.testing.assert_array_equal(offsets[:2, :4], [[0, 1, 2, -1], [0, 1, -1, -1]])
    for r in range(4):
        ids = seg[r][seg[r] > 0]
        n = len(np.unique(ids))
        want_len = [int(np.sum(ids == s)) for s in range(1, n + 1)]
        want_off = [int(np.argmax(seg[r] == s)) for s in range(1, n + 1)]
        assert lengths[r].tolist() == want_len + [-1] * (4 - n)
        assert offsets[r].tolist() == want_off + [-1] * (5 - n)


def test_layer_unroll_and_causal_only_mask_agree(hf_tiny_dir):
    """A rolled scan equals the unrolled one; no segment ids equals all-ones segment ids."""
    config, params = load_pretrained(hf_tiny_dir)
    tokens = random_tokens(np.random.default_rng(5), (2, 24))
    ref = np.asarray(M.apply(params, tokens, config))
    rolled = M.apply(params, tokens, config.replace(layer_unroll=1))
    np.testing.assert_allclose(rolled, ref, rtol=1e-6, atol=1e-6)
    ones = M.apply(params, tokens, config, segment_ids=np.ones((2, 24), np.int32))
    np.testing.assert_allclose(ones, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("vocab", [1000, 1024])  # padded to 1024 inside the op / already aligned
def test_fused_head_log_probs_match_float64(vocab):
    """head_log_probs (padded vocabulary, custom VJP) against a float64 NumPy log-softmax and its
    analytic gradients, with random cotangents, and under a class-axis vmap."""
    rng = np.random.default_rng(vocab)
    h, e = rng.normal(size=(2, 7, 16)), 0.3 * rng.normal(size=(vocab, 16))
    y, ct = rng.integers(0, vocab, size=(2, 7)), rng.uniform(size=(2, 7))
    config = M.config_for("tiny", dtype="float32")

    logits = h @ e.T
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    ref = np.take_along_axis(logits, y[..., None], -1)[..., 0] - lse
    dlogits = ct[..., None] * (np.eye(vocab)[y] - np.exp(logits - lse[..., None]))
    ref_dh, ref_de = dlogits @ e, np.einsum("btv,btd->vd", dlogits, h)

    def f(h, e):
        return jnp.sum(
            jnp.asarray(ct, jnp.float32)
            * head_log_probs(h, e, jnp.asarray(y), config.compute_dtype)
        )

    h32, e32 = jnp.asarray(h, jnp.float32), jnp.asarray(e, jnp.float32)
    np.testing.assert_allclose(
        head_log_probs(h32, e32, jnp.asarray(y), config.compute_dtype), ref, rtol=1e-5, atol=1e-5
    )
    dh, de = jax.grad(f, (0, 1))(h32, e32)
    np.testing.assert_allclose(dh, ref_dh, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(de, ref_de, rtol=1e-4, atol=1e-5)
    stacked = jax.vmap(jax.grad(f, 1), in_axes=(None, 0))(h32, jnp.stack([e32, 2 * e32]))
    np.testing.assert_allclose(stacked[0], ref_de, rtol=1e-4, atol=1e-5)


def test_init_is_flax_init_as_one_program():
    """`init_params` (jitted, through its cheapest forward pass: one token, a rolled layer loop)
    gives flax's op-by-op init of the same seed through the configured pass (every layer
    unrolled, 8 tokens) up to float32 rounding of the normal samples, whatever the settings
    that leave the parameter layout alone; another seed gives other weights."""
    mc = M.config_for("tiny", vocab_size=64, n_positions=16)
    assert mc.scan_unroll == mc.n_layer  # the reference runs the unrolled pass
    eager = M.GPT2(mc).init(jax.random.key(3), jnp.zeros((1, 8), jnp.int32))["params"]
    for config in (mc, dataclasses.replace(mc, remat="full", layer_unroll=1, dropout=0.3)):
        jitted = M.init_params(config, seed=3)
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(
                np.asarray(a), np.asarray(b), rtol=0, atol=1e-7
            ),
            eager,
            jitted,
        )
    other = M.init_params(mc, seed=4)
    assert not np.array_equal(jitted["wte"]["embedding"], other["wte"]["embedding"])


def test_logsumexp_one_pass_is_float64_logsumexp():
    """The head's one-read logsumexp against float64 NumPy: GPT-2-like logits (large, negative,
    one row rising to its max at the end, one falling), the padded vocabulary's -inf columns,
    a row that is -inf but for one entry."""
    from gencls_jax.model.head import logsumexp_one_pass

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((6, 50304)) * 8 - 60).astype(np.float32)
    x[0] = np.linspace(-120, 5, x.shape[1])
    x[1] = np.linspace(5, -120, x.shape[1])
    x[2] = -np.inf
    x[2, 17] = -3.0
    x[:, 50257:] = -np.inf
    x64 = x.astype(np.float64)
    mx = x64.max(1, keepdims=True)
    ref = np.log(np.exp(x64 - mx).sum(1)) + mx[:, 0]
    got = np.asarray(jax.jit(logsumexp_one_pass)(jnp.asarray(x)))
    assert got[2] == -3.0
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-5)
