"""Sampling: the cached decode path against full recomputation, and the sampling contract."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencls_jax.model import decode as G
from gencls_jax.model import gpt2 as M
from gencls_jax.scoring.score import stack_params

VOCAB = 97
BOS = VOCAB - 1
CONFIG = M.config_for("tiny", vocab_size=VOCAB, n_positions=48, bos_token_id=BOS)
# Settings most tests share, so the jitted loop compiles once per distinct static set.
GREEDY = dict(temperature=0.0, top_k=0, top_p=1.0)
SAMPLE = dict(temperature=1.0, top_k=0, top_p=1.0)
REF_WIDTH = 24  # every reference row is right-padded to this width: one compile


@pytest.fixture(scope="module")
def params():
    # Larger-than-init weights so logits are spread out and sampled sequences vary.
    p = jax.jit(M.init_params, static_argnums=(0, 1))(CONFIG, 0)
    return jax.tree_util.tree_map(lambda x: x * 3.0 if x.ndim > 1 else x, p)


@jax.jit
def _ref_forward(params, rows, mask):
    return M.apply(params, rows, CONFIG, None, mask)


def full_logits(params, rows):
    """Next-token logits after each (unpadded) row, recomputed from scratch. Rows are
    right-padded to REF_WIDTH: by causality the padding after a row's end changes nothing."""
    tokens = np.zeros((len(rows), REF_WIDTH), np.int32)
    mask = np.zeros_like(tokens)
    for i, r in enumerate(rows):
        tokens[i, : len(r)], mask[i, : len(r)] = r, 1
    logits = np.asarray(_ref_forward(params, tokens, mask))
    return np.stack([logits[i, len(r) - 1] for i, r in enumerate(rows)])


def naive_greedy(params, prompts, n):
    rows = [list(p) for p in prompts]
    for _ in range(n):
        for r, tok in zip(rows, np.argmax(full_logits(params, rows), axis=-1)):
            r.append(int(tok))
    return [r[len(p) :] for r, p in zip(rows, prompts)]


PROMPTS = {
    "bos_only": [[BOS], [BOS], [BOS]],
    "long_equal": [[BOS, 5, 6, 7, 8], [BOS, 9, 1, 2, 3], [BOS, 4, 4, 4, 4]],
    "left_padded": [[BOS], [BOS, 11, 12, 13, 14, 15], [BOS, 20, 21]],
}


@pytest.mark.parametrize("name", list(PROMPTS))
def test_cached_decode_equals_full_recompute(params, name):
    prompts = PROMPTS[name]
    steps = 6
    cont = np.random.default_rng(0).integers(0, VOCAB, (len(prompts), steps)).astype(np.int32)
    tokens, mask = G.left_pad(prompts, pad_id=0)
    prefill = jax.jit(G.prefill, static_argnames=("config", "cache_len"))
    step = jax.jit(G.decode_step, static_argnames="config")
    logits, cache, pos = prefill(params, tokens, mask, CONFIG, tokens.shape[1] + steps)
    for i in range(steps + 1):
        ref = full_logits(params, [list(p) + cont[r, :i].tolist() for r, p in enumerate(prompts)])
        np.testing.assert_allclose(
            np.asarray(logits), ref, rtol=1e-5, atol=1e-5, err_msg=f"step {i}"
        )
        if i < steps:
            logits, cache = step(params, jnp.asarray(cont[:, i]), pos + i, cache, CONFIG)
    assert int(cache.index) == tokens.shape[1] + steps


def test_greedy_equals_naive_loop(params):
    prompts = PROMPTS["left_padded"]
    gen = G.generate(params, CONFIG, prompts, rng=0, max_new_tokens=8, eos_id=None, **GREEDY)
    assert gen.tokens.shape == (3, 8)
    assert np.asarray(gen.tokens).tolist() == naive_greedy(params, prompts, 8)
    np.testing.assert_array_equal(gen.lengths, 8)
    assert not np.any(gen.finished)


def test_seed_reproducible_and_varies(params):
    kw = dict(rng=0, max_new_tokens=12, eos_id=None, batch_size=8, **SAMPLE)
    a = G.generate(params, CONFIG, [BOS], **kw)
    b = G.generate(params, CONFIG, [BOS], **kw)
    c = G.generate(params, CONFIG, [BOS], **{**kw, "rng": jax.random.key(1)})
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert not np.array_equal(a.tokens, c.tokens)
    assert len({tuple(r) for r in np.asarray(a.tokens).tolist()}) > 1  # rows differ within a batch


def test_stops_at_eos_with_right_lengths(params):
    kw = dict(rng=3, max_new_tokens=16, batch_size=8, **SAMPLE)
    free = np.asarray(G.generate(params, CONFIG, [BOS], eos_id=None, **kw).tokens)
    eos = int(free[0, 4])  # a token row 0 emits, so at least one row stops early
    gen = G.generate(params, CONFIG, [BOS], eos_id=eos, pad_id=0, **kw)
    tokens, lengths, finished = map(np.asarray, gen)
    assert tokens.shape == (8, 16)
    assert finished[0] and lengths[0] <= 4
    for r in range(8):
        hits = np.flatnonzero(free[r] == eos)
        expect = int(hits[0]) if hits.size else 16
        assert lengths[r] == expect and finished[r] == bool(hits.size)
        # Same seed, same per-step keys: identical up to and including EOS, padding after.
        np.testing.assert_array_equal(tokens[r, :expect], free[r, :expect])
        if hits.size:
            assert tokens[r, expect] == eos and np.all(tokens[r, expect + 1 :] == 0)
    assert G.token_lists(gen)[0] == free[0, : lengths[0]].tolist()


def test_all_rows_stop_early(params):
    one = G.generate(
        params, CONFIG, [BOS], rng=0, max_new_tokens=1, eos_id=None, batch_size=2, **GREEDY
    )
    first = int(one.tokens[0, 0])
    gen = G.generate(
        params, CONFIG, [BOS], rng=0, max_new_tokens=10, eos_id=first, batch_size=2, **GREEDY
    )
    np.testing.assert_array_equal(gen.lengths, 0)
    assert np.all(gen.finished) and np.all(np.asarray(gen.tokens) == first)  # pad defaults to eos


def test_top_k_1_and_tiny_top_p_equal_greedy(params):
    prompts = PROMPTS["long_equal"]
    kw = dict(rng=5, max_new_tokens=10, eos_id=None)
    greedy = G.generate(params, CONFIG, prompts, **kw, **GREEDY).tokens
    top_k = G.generate(params, CONFIG, prompts, temperature=1.0, top_k=1, top_p=1.0, **kw).tokens
    top_p = G.generate(params, CONFIG, prompts, temperature=1.0, top_k=0, top_p=1e-6, **kw).tokens
    np.testing.assert_array_equal(top_k, greedy)
    np.testing.assert_array_equal(top_p, greedy)


def test_filter_logits():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    kept = lambda k, p: np.isfinite(np.asarray(G.filter_logits(logits, k, p)))[0].tolist()  # noqa: E731
    assert kept(2, 1.0) == [True, True, False, False]
    assert kept(0, 0.5) == [True, False, False, False]  # 0.5 reached by the top token alone
    assert kept(0, 0.6) == [True, True, False, False]
    assert kept(0, 0.9) == [True, True, True, False]
    assert kept(0, 0.83) == [True, True, True, False]
    assert kept(3, 0.83) == [True, True, False, False]  # nucleus of the renormalised top-3
    assert kept(0, 1.0) == [True] * 4


@pytest.mark.parametrize("top_k,top_p", [(3, 1.0), (0, 0.83), (3, 0.95)])
def test_sampled_frequencies(top_k, top_p):
    """Both sampling paths (draw among the top-k / over the filtered vocabulary) sample the
    renormalised kept distribution: here the top 3 of [.5, .3, .15, .05] at temperature 1."""
    logits = jnp.log(jnp.tile(jnp.array([[0.5, 0.3, 0.15, 0.05]]), (20000, 1)))
    toks = np.asarray(G.sample_token(logits, jax.random.key(0), 1.0, top_k, top_p))
    freq = np.bincount(toks, minlength=4) / toks.size
    np.testing.assert_allclose(freq, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0], atol=0.015)


def test_generate_for_class(params):
    other = jax.tree_util.tree_map(lambda x: -x, params)
    stacked = stack_params([params, other])
    kw = dict(rng=7, max_new_tokens=6, eos_id=None, batch_size=4, **SAMPLE)
    per_class = G.generate_for_class(stacked, CONFIG, class_index=1, **kw)
    direct = G.generate(other, CONFIG, [CONFIG.bos_token_id], **kw)
    np.testing.assert_array_equal(per_class.tokens, direct.tokens)
    prefixed = G.generate_for_class(params, CONFIG, prefix_tokens=[3, 4], **kw)
    direct = G.generate(params, CONFIG, [CONFIG.bos_token_id, 3, 4], **kw)
    np.testing.assert_array_equal(prefixed.tokens, direct.tokens)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(max_new_tokens=48), "exceeds the model's n_positions=48"),
        (dict(temperature=-0.5), "temperature must be >= 0"),
        (dict(top_p=0.0), "top_p must be in"),
        (dict(top_k=-1), "top_k must be"),
        (dict(max_new_tokens=0), "max_new_tokens must be"),
        (dict(eos_id=VOCAB), "eos_id=97 is outside"),
        (dict(prompt_tokens=[[BOS], []]), "empty prompt"),
        (dict(prompt_tokens=[VOCAB + 3]), "prompt token ids"),
        (dict(prompt_tokens=[[BOS], [BOS]], batch_size=3), "batch_size=3 but 2 prompts"),
    ],
)
def test_bad_arguments_are_one_line_errors(params, kw, match):
    args = dict(prompt_tokens=[BOS, 1], rng=0, max_new_tokens=4, eos_id=BOS, **SAMPLE)
    args.update(kw)
    prompt = args.pop("prompt_tokens")
    with pytest.raises(ValueError, match=match) as e:
        G.generate(params, CONFIG, prompt, **args)
    assert "\n" not in str(e.value)


def test_distinct_ngrams_and_dedupe():
    assert G.distinct_ngrams([[1, 2, 3], [1, 2, 4]], 1) == 4 / 6
    assert G.distinct_ngrams([[1, 2, 3], [1, 2, 4]], 2) == 3 / 4
    assert G.distinct_ngrams([[1]], 2) == 0.0
    assert G.dedupe(["a b", "c", "a  b ", "c", "d"]) == [0, 1, 4]


def test_synthetic_selection_rules():
    """Length floor, blank texts, exact duplicates (first kept), and the margin window."""
    import ml_collections

    from gencls_jax.commands.generate import select

    texts = ["a good film", "  ", "a good film", "bad", "fine movie", "great"]
    lengths = np.array([3, 2, 3, 1, 2, 1])
    margin = np.array([5.0, 5.0, 5.0, 5.0, 40.0, -2.0])
    g = ml_collections.ConfigDict(
        dict(min_tokens=2, dedupe=True, min_margin=float("-inf"), max_margin=float("inf"))
    )
    np.testing.assert_array_equal(
        select(texts, lengths, margin, g), [True, False, False, False, True, False]
    )
    g.min_tokens, g.dedupe = 1, False
    np.testing.assert_array_equal(
        select(texts, lengths, margin, g), [True, False, True, True, True, True]
    )
    g.min_margin, g.max_margin = 0.0, 10.0  # near the boundary, on the right side
    np.testing.assert_array_equal(
        select(texts, lengths, margin, g), [True, False, True, True, False, False]
    )
