"""The pure scorer against a float64 NumPy computation from Hugging Face PyTorch logits."""

import jax
import numpy as np
import pytest

from gencls_jax.data.batching import make_batch
from gencls_jax.data.rows import make_rows
from gencls_jax.errors import DataError
from gencls_jax.model import head as H
from gencls_jax.model.weights import load_pretrained
from gencls_jax.scoring import score as S

torch = pytest.importorskip("torch")
import transformers  # noqa: E402

BOS = 999  # the tiny fixture model's <|endoftext|>


@pytest.fixture(scope="module")
def tiny(hf_tiny_dir):
    config, params = load_pretrained(hf_tiny_dir)
    hf = transformers.GPT2LMHeadModel.from_pretrained(hf_tiny_dir).eval()
    return config, params, hf


def ref_token_logprobs(hf, inputs, targets):
    """float64 log p(targets | inputs) from the PyTorch logits, one unpadded row."""
    with torch.no_grad():
        logits = hf(torch.tensor([list(inputs)], dtype=torch.long)).logits[0].double().numpy()
    logits = logits - logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return logp[np.arange(len(targets)), np.asarray(targets)]


def ref_sequence_ll(hf, text):
    return ref_token_logprobs(hf, [BOS] + list(text[:-1]), text).sum()


def padded(texts, length, left=False):
    tokens = np.zeros((len(texts), length), np.int32)
    mask = np.zeros((len(texts), length), np.int32)
    for i, t in enumerate(texts):
        sl = slice(length - len(t), length) if left else slice(0, len(t))
        tokens[i, sl], mask[i, sl] = t, 1
    return tokens, mask


def random_texts(seed, lengths):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 999, size=n).tolist() for n in lengths]


@pytest.mark.parametrize("left", [False, True])
def test_sequence_log_likelihood_matches_float64_reference(tiny, left):
    config, params, hf = tiny
    texts = random_texts(0, [64, 1, 17, 40])
    tokens, mask = padded(texts, 64, left=left)
    ours = np.asarray(S.sequence_log_likelihood(params, tokens, mask, config))
    ref = np.array([ref_sequence_ll(hf, t) for t in texts])
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=2e-6, atol=1e-4)


def test_padding_invariance(tiny):
    """A text scores the same alone, padded, or batched with texts of other lengths."""
    config, params, _ = tiny
    texts = random_texts(1, [5, 33, 12])
    tokens, mask = padded(texts, 48)
    batched = np.asarray(S.sequence_log_likelihood(params, tokens, mask, config))
    for i, t in enumerate(texts):
        alone = S.sequence_log_likelihood(
            params, np.array([t], np.int32), np.ones((1, len(t)), np.int32), config
        )
        np.testing.assert_allclose(batched[i], np.asarray(alone)[0], rtol=1e-6)


def test_jit_and_class_vmap_equal_a_python_loop(tiny):
    config, params, _ = tiny
    others = [jax.tree_util.tree_map(lambda x, k=k: x * (1 + 0.05 * k), params) for k in range(3)]
    stacked = S.stack_params(others)
    tokens, mask = padded(random_texts(2, [20, 7]), 24)
    scorer = jax.jit(S.class_log_likelihoods, static_argnames="config")
    both = np.asarray(scorer(stacked, tokens, mask, config=config))
    assert both.shape == (2, 3)
    loop = np.stack(
        [np.asarray(S.sequence_log_likelihood(p, tokens, mask, config)) for p in others], axis=1
    )
    np.testing.assert_allclose(both, loop, rtol=1e-6)
    assert len(set(np.round(both[0], 3))) == 3  # the three models really differ


def test_bfloat16_scorer_close_to_float32(tiny):
    """bfloat16 matmuls, float32 log-softmax: summed log-likelihoods agree to about 1%."""
    config, params, _ = tiny
    tokens, mask = padded(random_texts(3, [64, 30]), 64)
    f32 = np.asarray(S.sequence_log_likelihood(params, tokens, mask, config))
    bf16 = np.asarray(
        S.sequence_log_likelihood(params, tokens, mask, config.replace(dtype="bfloat16"))
    )
    np.testing.assert_allclose(bf16, f32, rtol=1e-2)


def rows_ll(params, config, texts, **kw):
    rows = make_rows(texts, config.n_positions, BOS, **kw)
    b = make_batch(
        rows, (config.n_positions, [[i] for i in range(len(rows.inputs))]), len(rows.inputs)
    )
    per_row = np.asarray(S.class_sums(params, b, config, stacked=False))[:, 0]
    out = np.zeros(len(texts))
    np.add.at(out, rows.text_index, per_row)
    return out, rows


def test_short_texts_rows_equal_sequence_scorer(tiny):
    config, params, _ = tiny
    texts = random_texts(4, [64, 3, 50])
    ours, rows = rows_ll(params, config, texts, long_text="window")
    assert len(rows.inputs) == 3  # one row each: nothing to window
    tokens, mask = padded(texts, 64)
    np.testing.assert_allclose(
        ours, S.sequence_log_likelihood(params, tokens, mask, config), rtol=1e-6
    )


def test_long_text_error_truncate_and_window(tiny):
    config, params, hf = tiny
    ctx = config.n_positions  # 64
    text = random_texts(5, [150])[0]
    with pytest.raises(DataError, match="text 0: 150 tokens, more than data.max_len=64"):
        make_rows([text], ctx, BOS, long_text="error")

    trunc, _ = rows_ll(params, config, [text], long_text="truncate")
    np.testing.assert_allclose(trunc[0], ref_sequence_ll(hf, text[:ctx]), rtol=2e-6)

    # Strided windows, the standard perplexity recipe, computed independently in float64:
    # window 1 = BOS + text[:63] scores text[:64]; then each window moves by `stride`, sees
    # up to 64 tokens and scores only tokens not yet scored.
    stride = 20
    ours, rows = rows_ll(params, config, [text], long_text="window", stride=stride)
    ref = ref_token_logprobs(hf, [BOS] + text[: ctx - 1], text[:ctx]).sum()
    scored = ctx
    n_windows = 1
    while scored < len(text):
        stop = min(scored + stride, len(text))
        start = max(stop - ctx - 1, 0)
        lp = ref_token_logprobs(hf, text[start : stop - 1], text[start + 1 : stop])
        ref += lp[scored - start - 1 :].sum()
        scored, n_windows = stop, n_windows + 1
    assert len(rows.inputs) == n_windows == 1 + int(np.ceil((150 - 64) / stride))
    assert sum(w.sum() for w in rows.weights) == 150  # every token scored exactly once
    assert all(len(r) <= ctx for r in rows.inputs)
    np.testing.assert_allclose(ours[0], ref, rtol=2e-6)


def test_bad_scoring_input(tiny):
    config, _, _ = tiny
    with pytest.raises(DataError, match="text 1: no tokens"):
        make_rows([[1, 2], []], config.n_positions, BOS)
    with pytest.raises(DataError, match="long_text must be one of"):
        make_rows([[1]], config.n_positions, BOS, long_text="drop")


# 100 tokens: 7 chunks, the last padded; one chunk
@pytest.mark.parametrize("head_chunk", [16, 4096])
def test_chunked_log_probs_equal_full_logits(tiny, head_chunk):
    """Values and gradients of the chunked head equal the full [B, T, V] computation."""
    from gencls_jax.model.gpt2 import apply

    config, params, _ = tiny
    config = config.replace(head_chunk=head_chunk)
    tokens = np.random.default_rng(6).integers(0, 999, (2, 50)).astype(np.int32)
    targets = np.roll(tokens, -1, axis=1)

    def full(p):
        return H.token_log_probs(apply(p, tokens, config), targets)

    def chunked(p):
        h = apply(p, tokens, config, return_hidden=True)
        return H.chunked_token_log_probs(
            h, p["wte"]["embedding"], targets, config.compute_dtype, config.head_chunk
        )

    np.testing.assert_allclose(chunked(params), full(params), rtol=1e-6, atol=1e-6)
    g_full = jax.grad(lambda p: full(p).sum())(params)
    g_chunk = jax.grad(lambda p: chunked(p).sum())(params)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g_full, g_chunk
    )
