"""Packed decision batches (data.batching='pack' with train.objective='decision'): up to B texts
of a step packed into R rows of one length, each token's text slot in `text_ids`. The packed
objective equals the one-text-per-row objective on the same texts (and a float64 reference),
the epoch plan sees every text once and resumes exactly, the jitted step trains on it, and
what it does not support is one line."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs.base import get_config
from gencls_jax import conditioning
from gencls_jax.data.batching import (
    BatchSpec,
    SlicedStream,
    auto_pack_rows,
    decision_pack_plan,
)
from gencls_jax.data.rows import make_rows
from gencls_jax.errors import DataError, RunError
from gencls_jax.scoring.score import stack_params
from gencls_jax.system import sharding
from gencls_jax.training import objectives
from gencls_jax.training import step as TS

pytest.importorskip("torch")
from test_objectives import BOS, PREFIXES, ref_log_probs, texts  # noqa: E402

LENGTHS = [3, 9, 5, 12, 2, 7, 4]  # text tokens: rows of 4..15 tokens after a prefix


@pytest.fixture(scope="module")
def tiny(hf_tiny_dir):
    import transformers

    from gencls_jax.model.weights import load_pretrained

    config, params = load_pretrained(hf_tiny_dir)
    hf = transformers.GPT2LMHeadModel.from_pretrained(hf_tiny_dir).eval().double()
    return config.replace(dropout=0.0), params, hf


def streams(toks, labels, prefixes, batch=4, rows=2, max_len=32, buckets=(16, 32)):
    """(packed, one text per row) streams of the same slices: slice k = the texts after
    prefixes[k] (3 tokens kept for a prefix, so every slice scores the same text tokens)."""
    slices = tuple(
        make_rows(toks, max_len, BOS, "truncate", None, None, [p] * len(toks), None, 3)
        for p in prefixes
    )
    labels = np.asarray(labels)
    packed = SlicedStream(slices, labels, BatchSpec("pack", batch, max_len, buckets), 0, rows)
    plain = SlicedStream(slices, labels, BatchSpec("bucket", batch, max_len, buckets), 0)
    return packed, plain


def unpacked_twin(packed: SlicedStream, plain: SlicedStream, members):
    """The packed step's texts, one per row, in its slot order (bucket batch at the packed T)."""
    order = [i for m in members for i in m]
    T = packed.pack_shape()[1]
    return plain._batch(T, [[i] for i in order], packed.spec.batch_size)


def sums_fn(objective, config):
    """Jitted (params, batch) -> the objective's sums as NumPy arrays."""
    fn = jax.jit(lambda p, b: objective.sums(p, b, config, None))
    return lambda p, b: {n: np.asarray(v) for n, v in fn(p, b).items()}


def test_packed_sums_equal_one_text_per_row_and_float64(tiny, prefixes=PREFIXES):
    """Every step of an epoch: nll, weight, tokens, ce, texts, correct of the packed batch are
    those of the same texts one per row; the cross-entropy and the true class's LM sum also
    match float64 PyTorch. The label prefixes differ in length between slices, so a text sits
    at other offsets in each slice (text_ids per slice)."""
    config, params, hf = tiny
    k = len(prefixes)
    toks = texts(11, LENGTHS)
    labels = [i % k for i in range(len(toks))]
    packed, plain = streams(toks, labels, prefixes, batch=4, rows=2)
    prior = np.log(np.arange(1, k + 1) / np.sum(np.arange(1, k + 1)))
    objective = objectives.DecisionObjective(1.0, 1.0, tuple(prior), stacked=False)
    fn = sums_fn(objective, config)
    plan = packed.plan(0)
    assert len(plan) >= 2 and any(len(m) > 1 for _, bins in plan for m in bins)
    for (T, members), batch in zip(plan, packed.batches(0)):
        assert batch["inputs"].shape == (k, 2, T) and batch["text_ids"].shape == (k, 2, T)
        got, want = fn(params, batch), fn(params, unpacked_twin(packed, plain, members))
        assert got.keys() == want.keys()
        for n in got:
            np.testing.assert_allclose(got[n], want[n], rtol=2e-5, atol=1e-4, err_msg=n)
        # float64: log p(x|c) of each text (its prefix conditions), Bayes' rule, the true LM
        order = [i for m in members for i in m]
        ll = np.array(
            [
                [
                    ref_log_probs(hf, [BOS] + (p + toks[i])[:-1], p + toks[i])[len(p) :].sum()
                    for p in prefixes
                ]
                for i in order
            ]
        )
        y = np.asarray(labels)[order]
        scores = ll + prior
        top = scores.max(1, keepdims=True)
        logp = scores - top - np.log(np.exp(scores - top).sum(1, keepdims=True))
        np.testing.assert_allclose(got["ce"][0], -logp[np.arange(len(y)), y].sum(), rtol=1e-4)
        np.testing.assert_allclose(got["nll"][0], -ll[np.arange(len(y)), y].sum(), rtol=1e-4)
        assert got["texts"][0] == len(order)
        assert got["correct"][0] == np.sum(scores.argmax(1) == y)
        assert got["weight"][0] == sum(len(toks[i]) for i in order)


def test_packed_sums_of_stacked_class_models(tiny):
    """per_class: K stacked models, every model reads the text as it is (equal slices)."""
    config, params, _ = tiny
    stacked = stack_params([params, jax.tree_util.tree_map(lambda x: x * 1.01, params)])
    toks = texts(12, LENGTHS)
    labels = [0, 1, 1, 0, 1, 0, 0]
    rows = make_rows(toks, 32, BOS, "truncate")
    spec = BatchSpec("pack", 4, 32, (16, 32))
    packed = SlicedStream((rows, rows), np.asarray(labels), spec, 0, 2)
    plain = SlicedStream((rows, rows), np.asarray(labels), BatchSpec("bucket", 4, 32, (16,)), 0)
    objective = objectives.DecisionObjective(1.0, 1.0, (-0.5, -1.0), stacked=True)
    fn = sums_fn(objective, config)
    for (_, members), batch in zip(packed.plan(0), packed.batches(0)):
        got, want = fn(stacked, batch), fn(stacked, unpacked_twin(packed, plain, members))
        for n in got:
            np.testing.assert_allclose(got[n], want[n], rtol=2e-5, atol=1e-4, err_msg=n)


def test_packed_batch_layout():
    """labels[slot] is the class of the text at text_ids == slot, whose tokens in slice k are
    that text after class k's prefix; positions restart per text; -1 at padding and empty
    slots."""
    toks = texts(13, LENGTHS)
    labels = [0, 1, 1, 0, 1, 0, 1]
    packed, _ = streams(toks, labels, PREFIXES, batch=4, rows=2)
    for (_, members), b in zip(packed.plan(0), packed.batches(0)):
        order = [i for m in members for i in m]
        assert b["labels"].tolist() == [labels[i] for i in order] + [-1] * (4 - len(order))
        assert ((b["text_ids"] >= 0) == (b["segment_ids"] > 0)).all()
        for slot, i in enumerate(order):
            for s, p in enumerate(PREFIXES):
                at = b["text_ids"][s] == slot
                assert b["targets"][s][at].tolist() == p + toks[i]
                assert b["positions"][s][at].tolist() == list(range(len(p) + len(toks[i])))
                assert b["weights"][s][at].sum() == len(toks[i])


def test_pack_plan_every_text_once_within_the_shape_and_resumable():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 47, size=200)
    B, R, T = 8, 3, 64
    for epoch in (0, 1):
        plan = decision_pack_plan(lengths, B, R, T, (7, epoch))
        seen = [i for _, bins in plan for m in bins for i in m]
        assert sorted(seen) == list(range(200))
        for j, (t, bins) in enumerate(plan):
            assert t == T and 1 <= len(bins) <= R
            assert sum(len(m) for m in bins) <= B
            assert all(lengths[m].sum() <= T for m in bins)
            # a step of fewer than B texts closed because the next text fit none of its rows
            n = sum(len(m) for m in bins)
            if n < B and j + 1 < len(plan):
                first = lengths[plan[j + 1][1][0][0]]
                assert len(bins) == R and all(T - lengths[m].sum() < first for m in bins)
        assert plan == decision_pack_plan(lengths, B, R, T, (7, epoch))  # deterministic
    assert decision_pack_plan(lengths, B, R, T, (7, 0)) != decision_pack_plan(
        lengths, B, R, T, (7, 1)
    )
    # most steps hold B texts at the auto row count
    auto = auto_pack_rows(lengths, B, T)
    assert auto == int(np.ceil(B * lengths.mean() / (0.85 * T)))
    plan = decision_pack_plan(lengths, B, auto, T, (7, 0))
    assert np.mean([sum(len(m) for m in bins) == B for _, bins in plan]) > 0.5
    # batches(epoch, start=s) are the uninterrupted epoch's from s on
    toks = texts(14, [3, 9, 5, 12, 2, 7, 4, 11, 6, 1, 8])
    packed, _ = streams(toks, [i % 2 for i in range(11)], PREFIXES, batch=3, rows=2)
    whole = list(packed.batches(1))
    assert len(whole) == packed.num_batches(1) >= 4
    for s in (1, 3):
        for a, b in zip(packed.batches(1, start=s), whole[s:], strict=True):
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_auto_rows_and_the_run_length():
    assert auto_pack_rows(np.array([18] * 10), 8, 64) == 3  # TREC: ceil(144 / 54.4)
    assert auto_pack_rows(np.array([29] * 10), 8, 128) == 3  # SST-2 in 128 rows
    assert auto_pack_rows(np.array([60] * 10), 8, 64) == 8  # at most B
    assert auto_pack_rows(np.array([1] * 10), 8, 1024) == 1  # at least 1
    toks = texts(15, LENGTHS)  # longest row: 12 + 3 = 15 -> T = 16 of the ladder (16, 32)
    packed, _ = streams(toks, [0] * 7, PREFIXES, batch=4, rows=0)
    mean = np.mean([n + 3 for n in LENGTHS])
    assert packed.pack_shape() == (int(np.ceil(4 * mean / (0.85 * 16))), 16)
    toks = texts(15, LENGTHS + [20])  # longest row 23 -> T = 32
    packed, _ = streams(toks, [0] * 8, PREFIXES, batch=4, rows=1)
    assert packed.pack_shape() == (1, 32)
    assert {b["inputs"].shape for b in packed.batches(0)} == {(2, 1, 32)}


def test_packed_train_step_trains_like_one_text_per_row(tiny):
    """The jitted step on a packed batch: a finite loss, params that move, the same update as
    the one-text-per-row batch of its texts (float32, dropout off)."""
    config, params, _ = tiny
    toks = texts(16, LENGTHS)
    packed, plain = streams(toks, [0, 1, 1, 0, 1, 0, 1], PREFIXES, batch=4, rows=2)
    (_, members), batch = packed.plan(0)[0], next(iter(packed.batches(0)))
    c = get_config()
    c.train.warmup_steps, c.train.grad_clip = 0, 0.0
    tc = ml_collections.FrozenConfigDict(c.train)
    objective = objectives.DecisionObjective(1.0, 1.0, (-0.7, -0.7), stacked=False)
    TS.check_batch(batch, stacked=False, num_classes=None, accum=1, n_devices=1)
    out = []
    for b in (batch, unpacked_twin(packed, plain, members)):
        tx, step = TS.compiled_train_step(config, tc, False, 10, sharding.make_mesh(), objective)
        state = TS.init_state(jax.tree_util.tree_map(jnp.array, params), tx, tc, 0, None)
        new, m = step(state, b)
        loss = objective.losses({n: np.asarray(v) for n, v in m.items()}, xp=np)
        assert np.isfinite(loss).all() and loss[0] > 0
        out.append((new.params, loss))
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-5)
    wte = out[0][0]["wte"]["embedding"]
    assert not np.allclose(wte, params["wte"]["embedding"])
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), out[0][0], out[1][0]
    )


def test_what_packing_does_not_take_is_one_line(tiny):
    c = get_config()
    c.train.objective, c.data.batching = "decision", "pack"
    lp = conditioning.get("label_prefix")
    objectives.check_decision_batching(c, lp)  # fine
    c.train.grad_accum = 2
    with pytest.raises(RunError, match=r"^data.batching='pack' with .*grad_accum=1 \(got 2\)"):
        objectives.check_decision_batching(c, lp)
    c.train.grad_accum = 1
    with pytest.raises(RunError, match=r"^data.batching='pack' packs .* discriminative head"):
        objectives.check_decision_batching(c, conditioning.get("discriminative"))
    c.data.pack_rows = -1
    with pytest.raises(RunError, match=r"^data.pack_rows must be >= 0"):
        objectives.check_decision_batching(c, lp)
    assert "\n" not in objectives.PACK_HEAD

    config, params, _ = tiny
    toks = texts(17, LENGTHS)
    packed, _ = streams(toks, [0, 1] * 3 + [0], PREFIXES, batch=4, rows=2)
    batch = next(iter(packed.batches(0)))
    head = objectives.DecisionObjective(0.0, 1.0, (0.0, 0.0), stacked=False, head_pool="mean")
    with pytest.raises(RunError, match="discriminative head"):
        head.sums({"body": params, "head": None}, batch, config, None)
    with pytest.raises(ValueError, match="takes no micro-batches"):
        TS.check_batch(batch, stacked=False, num_classes=None, accum=2, n_devices=1)
    with pytest.raises(ValueError, match="text_ids shaped as its inputs"):
        TS.check_batch(
            {**batch, "text_ids": batch["text_ids"][:1]},
            stacked=False,
            num_classes=None,
            accum=1,
            n_devices=1,
        )
    with pytest.raises(DataError, match="data.pack_rows must be >= 0"):
        streams(toks, [0] * 7, PREFIXES, rows=-1)
    windows = make_rows([list(range(50))], 16, BOS, "window", 8)
    with pytest.raises(DataError, match="one row per text"):
        SlicedStream((windows,), np.array([0]), BatchSpec("pack", 2, 16, ()), 0)
