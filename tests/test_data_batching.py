"""Rows and batches: the BOS-shift recipe, pad/bucket/pack layouts, packing == unpacked loss on the
real model, per-class stepping, resume, scoring batches and the device prefetcher."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencls_jax.data.batching import (
    BatchSpec,
    PerClassStream,
    TrainStream,
    first_fit,
    make_batch,
    padding_fraction,
    scoring_batches,
    scoring_plan,
    scoring_rows,
)
from gencls_jax.data.prefetch import prefetch_to_device
from gencls_jax.data.rows import make_rows
from gencls_jax.errors import DataError
from gencls_jax.model.gpt2 import apply, config_for, init_params
from gencls_jax.model.head import token_log_probs
from gencls_jax.scoring import score

BOS = EOS = 999
KEYS = ("inputs", "targets", "weights", "positions", "segment_ids")


def random_texts(n, lo, hi, seed=0, vocab=900):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, rng.integers(lo, hi + 1)).astype(np.int32) for _ in range(n)]


def test_rows_bos_shift_eos_and_prefix():
    x = np.array([5, 6, 7], np.int32)
    rows = make_rows([x], 16, BOS, "error", 8, eos_id=EOS)
    np.testing.assert_array_equal(rows.inputs[0], [BOS, 5, 6, 7])
    np.testing.assert_array_equal(rows.targets[0], [5, 6, 7, EOS])
    np.testing.assert_array_equal(rows.weights[0], [1, 1, 1, 1])
    rows = make_rows([x], 16, BOS, "error", 8, eos_id=None, prefixes=[np.array([40, 41])])
    np.testing.assert_array_equal(rows.inputs[0], [BOS, 40, 41, 5, 6])
    np.testing.assert_array_equal(rows.targets[0], [40, 41, 5, 6, 7])
    np.testing.assert_array_equal(rows.weights[0], [0, 0, 1, 1, 1])


def test_rows_long_text_modes():
    x = np.arange(1, 21, dtype=np.int32)  # 20 tokens + EOS = 21 > max_len 8
    with pytest.raises(DataError, match=r"^text r7: 21 tokens, more than data.max_len=8"):
        make_rows([x], 8, BOS, "error", 4, eos_id=EOS, ids=["r7"])
    t = make_rows([x], 8, BOS, "truncate", 4, eos_id=EOS)
    assert len(t.inputs) == 1 and list(t.targets[0]) == list(range(1, 9))
    w = make_rows([x], 8, BOS, "window", 4, eos_id=EOS)
    scored = np.concatenate([tg[wt > 0] for tg, wt in zip(w.targets, w.weights)])
    # every token scored exactly once, in order
    np.testing.assert_array_equal(scored, np.r_[x, EOS])
    assert max(len(r) for r in w.inputs) <= 8 and set(w.text_index) == {0}


def reference_rows(texts, max_len, long_text, stride, eos, prefixes, room):
    """make_rows' contract, one text at a time (the loop it replaced): the reference."""
    context = max_len - room
    stride = stride or context // 2
    out = []  # (text, inputs, targets, weights)
    for i, text in enumerate(texts):
        t = list(text) + ([eos] if eos is not None else [])
        p = list(prefixes[i]) if prefixes is not None else []
        if long_text == "truncate":
            t = t[:context]
        end = min(context, len(t))
        out.append((i, [BOS, *p, *t[: end - 1]], [*p, *t[:end]], [0] * len(p) + [1] * end))
        scored = end
        while scored < len(t):
            stop = min(scored + stride, len(t))
            if prefixes is None:
                start = max(stop - context - 1, 0)
                w = [0] * (stop - start - 1)
                out.append((i, t[start : stop - 1], t[start + 1 : stop], w))
            else:
                start = max(stop - context, 0)
                w = [0] * (len(p) + stop - start)
                out.append((i, [BOS, *p, *t[start : stop - 1]], [*p, *t[start:stop]], w))
            w[len(w) - (stop - scored) :] = [1] * (stop - scored)
            scored = stop
    return out


@pytest.mark.parametrize("mode", ["truncate", "window", "error"])
@pytest.mark.parametrize("prefixed", [False, True])
@pytest.mark.parametrize("eos", [None, EOS])
def test_rows_match_the_per_text_reference(mode, prefixed, eos):
    """The vectorised first rows and the windows, row for row, against the reference loop:
    every mode, with and without label prefixes (of different lengths, one empty) and EOS."""
    rng = np.random.default_rng(hash((mode, prefixed, eos)) % 2**32)
    hi = 20 if mode == "error" else 70
    texts = random_texts(41, 1, hi, seed=int(rng.integers(1000)))
    texts[3] = list(map(int, texts[3]))  # a plain list is a text too
    prefixes = None
    if prefixed:
        prefixes = [np.arange(int(rng.integers(0, 4)), dtype=np.int32) + 900 for _ in texts]
        prefixes[0] = np.zeros(0, np.int32)
    for max_len, stride in [(32, None), (24, 5), (26, 11)]:
        room = 3 if prefixed else 0
        rows = make_rows(
            texts, max_len, BOS, mode, stride, eos_id=eos, prefixes=prefixes, prefix_room=room
        )
        want = reference_rows(texts, max_len, mode, stride, eos, prefixes, room)
        assert len(rows.inputs) == len(want)
        assert len(want) > len(texts) or mode != "window"  # some texts have windows
        np.testing.assert_array_equal(rows.text_index, [w[0] for w in want])
        for r, (_, inputs, targets, weights) in enumerate(want):
            np.testing.assert_array_equal(rows.inputs[r], inputs)
            np.testing.assert_array_equal(rows.targets[r], targets)
            np.testing.assert_array_equal(rows.weights[r], weights)
            assert rows.inputs[r].dtype == rows.targets[r].dtype == np.int32
            assert rows.weights[r].dtype == np.float32


def test_rows_name_the_first_bad_text():
    long = np.arange(1, 40, dtype=np.int32)
    with pytest.raises(DataError, match=r"^text b: 40 tokens, more than data.max_len=16"):
        make_rows([[1, 2], long, []], 16, BOS, "error", eos_id=EOS, ids=["a", "b", "c"])
    with pytest.raises(DataError, match=r"^text b: no tokens"):
        make_rows([[1, 2], [], long], 16, BOS, "error", eos_id=EOS, ids=["a", "b", "c"])
    assert make_rows([], 16, BOS).inputs == []


def unpack(batch):
    """Independent decoding of a batch into its (inputs, targets, weights) segments."""
    out = []
    for b in range(batch["inputs"].shape[0]):
        seg = batch["segment_ids"][b]
        for s in np.unique(seg[seg > 0]):
            m = seg == s
            idx = np.flatnonzero(m)
            assert np.all(np.diff(idx) == 1), "a segment must be contiguous"
            np.testing.assert_array_equal(batch["positions"][b, m], np.arange(m.sum()))
            out.append(
                tuple(tuple(batch[k][b, m].tolist()) for k in ("inputs", "targets", "weights"))
            )
        assert np.all(batch["weights"][b, seg == 0] == 0)
    return out


@pytest.mark.parametrize("scheme", ["pad", "bucket", "pack"])
def test_every_row_exactly_once_per_epoch(scheme):
    rows = make_rows(random_texts(37, 1, 60), 64, BOS, "window", 32, eos_id=EOS)
    spec = BatchSpec(scheme, 4, 64, (16, 32, 128))
    stream = TrainStream(rows, spec, seed=3)
    batches = list(stream.batches(epoch=0))
    assert len(batches) == stream.num_batches(0)
    want = sorted(
        tuple(tuple(np.asarray(a).tolist()) for a in r)
        for r in zip(rows.inputs, rows.targets, rows.weights)
    )
    got = sorted(s for b in batches for s in unpack(b))
    assert got == want
    shapes = {b["inputs"].shape for b in batches}
    for b in batches:
        assert {b[k].dtype for k in KEYS} == {np.dtype(np.int32), np.dtype(np.float32)}
        assert b["weights"].dtype == np.float32
    if scheme == "pad":
        assert shapes == {(4, 64)} and len(batches) == -(-len(rows.inputs) // 4)
    if scheme == "bucket":
        assert {s[1] for s in shapes} <= {16, 32, 64}
        for b in batches:  # the smallest bucket that fits the longest row in it
            longest = (b["segment_ids"] > 0).sum(1).max()
            assert b["inputs"].shape[1] == min(x for x in (16, 32, 64) if x >= longest)
    if scheme == "pack":
        assert shapes == {(4, 64)}
        # rows really hold several texts
        assert max((b["segment_ids"].max(1)).max() for b in batches) > 1
        assert padding_fraction(batches) < padding_fraction(
            TrainStream(rows, BatchSpec("pad", 4, 64, ()), 3).batches(0)
        )


def test_pack_texts_bounds_the_texts_of_a_row_and_keeps_every_text():
    """data.pack_texts (the bound cuDNN's packed kernel reads as static): no row holds more
    texts, every text still comes once an epoch, and without the bound these short texts do
    pack more per row."""
    rows = make_rows(random_texts(38, 1, 6), 64, BOS, "truncate", eos_id=EOS)
    most = {}
    for cap in (0, 3):
        stream = TrainStream(rows, BatchSpec("pack", 4, 64, (), cap), seed=1)
        batches = list(stream.batches(epoch=0))
        want = sorted(
            tuple(tuple(np.asarray(a).tolist()) for a in r)
            for r in zip(rows.inputs, rows.targets, rows.weights)
        )
        assert sorted(s for b in batches for s in unpack(b)) == want
        most[cap] = max(int(b["segment_ids"].max()) for b in batches)
    assert most[3] == 3 < most[0]
    with pytest.raises(DataError, match="data.pack_texts"):
        BatchSpec("pack", 4, 64, (), -1)


def test_resume_and_determinism():
    rows = make_rows(random_texts(50, 1, 40), 48, BOS, "truncate", 24, eos_id=EOS)
    for scheme in ("pad", "bucket", "pack"):
        s = TrainStream(rows, BatchSpec(scheme, 3, 48, (16, 32)), seed=5)
        full = list(s.batches(2))
        for start in (0, 4, len(full) - 1, len(full)):
            resumed = list(s.batches(2, start=start))
            assert len(resumed) == len(full) - start
            for a, b in zip(full[start:], resumed):
                for k in KEYS:
                    np.testing.assert_array_equal(a[k], b[k])
        other = list(s.batches(3))
        assert any(not np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(full, other))
        again = TrainStream(rows, BatchSpec(scheme, 3, 48, (16, 32)), seed=5)
        assert all(
            np.array_equal(a["targets"], b["targets"]) for a, b in zip(full, again.batches(2))
        )


@pytest.mark.parametrize("epochs", [2, 3])
def test_an_epoch_is_planned_once_for_the_loops_questions(monkeypatch, epochs):
    """The training loop asks a stream for each epoch's plan to size the run (`run_epochs`,
    `total_steps`), for the epoch's schedule and for its batches (~9 first-fit packings in a
    2-epoch run, ~0.4 s each for IMDB's LM texts). Each epoch is planned once while it is among
    the two kept (with three, each is planned again when read), and the batches are those of a
    stream that plans afresh every time."""
    import ml_collections

    import gencls_jax.data.batching as B
    from gencls_jax.training import loop

    planned = []
    real = B.epoch_plan
    monkeypatch.setattr(B, "epoch_plan", lambda *a: planned.append(a[2][1]) or real(*a))
    rows = make_rows(random_texts(60, 1, 40), 48, BOS, "truncate", 24, eos_id=EOS)
    spec = BatchSpec("pack", 3, 48, ())
    stream = TrainStream(rows, spec, seed=5)
    tc = ml_collections.ConfigDict(dict(epochs=epochs, min_steps=0, max_steps=0))
    assert loop.run_epochs(tc, stream.num_batches) == epochs
    totals = loop.total_steps(tc, stream.num_batches)
    got = []
    for e in range(epochs):  # what `loop.train` asks per epoch
        stream.num_batches(e)
        got.append(list(stream.batches(e)))
    # 2 epochs: each once (8 plans before); 3: sizing the run plans all three, each is planned
    # again when read (6 plans; 11 before)
    assert planned == (list(range(epochs)) if epochs <= 2 else [0, 1, 2] * 2)
    assert totals == (sum(len(g) for g in got),)
    for e in range(epochs):
        fresh = [make_batch(rows, p, 3) for p in real(B.row_lengths(rows), spec, (5, e, 0))]
        assert len(fresh) == len(got[e])
        for a, b in zip(fresh, got[e]):
            for k in KEYS:
                np.testing.assert_array_equal(a[k], b[k])


def test_per_class_stream_sees_each_class_once_per_epoch():
    """Imbalanced classes (13 / 5 / 2 texts, batch 2, two buckets): an epoch has max_k(own
    batches) steps; class k's own batches come first, then all-padding batches; every row of
    every class appears exactly once per epoch (no cycling)."""
    from collections import Counter

    sizes = (13, 5, 2)
    streams = tuple(
        TrainStream(
            make_rows(random_texts(n, 3, 20, seed=k), 32, BOS, "error", 16, eos_id=EOS),
            BatchSpec("bucket", 2, 32, (8, 16)),
            seed=1,
            stream=k,
        )
        for k, n in enumerate(sizes)
    )
    pc = PerClassStream(streams)
    for epoch in (0, 1):
        batches = list(pc.batches(epoch))
        own_counts = pc.steps_per_model(epoch)
        assert own_counts == tuple(len(st.plan(epoch)) for st in streams)
        assert own_counts[0] > own_counts[1] > own_counts[2] >= 1
        assert len(batches) == pc.num_batches(epoch) == own_counts[0]
        for b in batches:
            assert b["inputs"].shape[:2] == (3, 2) and all(
                b[k].shape == b["inputs"].shape for k in KEYS
            )
            real = [b["segment_ids"][k] > 0 for k in range(3)]
            assert b["inputs"].shape[2] == min(
                x for x in (8, 16, 32) if x >= max(r.sum(1).max() for r in real)
            )
        for k in range(len(sizes)):
            own = [{key: v[k] for key, v in b.items()} for b in batches]
            n_real = own_counts[k]
            assert all(o["weights"].sum() > 0 for o in own[:n_real])
            # padding only: weight 0
            assert all(not o[key].any() for o in own[n_real:] for key in KEYS)
            rows = streams[k].rows
            want = Counter(
                tuple(tuple(np.asarray(a).tolist()) for a in r)
                for r in zip(rows.inputs, rows.targets, rows.weights)
            )
            assert Counter(s for o in own for s in unpack(o)) == want
        resumed = list(pc.batches(epoch, start=4))
        assert len(resumed) == len(batches) - 4
        for a, b in zip(batches[4:], resumed):
            for key in KEYS:
                np.testing.assert_array_equal(a[key], b[key])


@pytest.fixture(scope="module")
def tiny_model():
    cfg = config_for("tiny", vocab_size=1000, dropout=0.0, bos_token_id=BOS)
    return cfg, init_params(cfg, seed=0)


def test_packed_loss_equals_unpacked_loss(tiny_model):
    """The same texts give the same per-token log-probs packed in rows as each alone (real
    model)."""
    cfg, params = tiny_model
    texts = random_texts(9, 2, 40, seed=7)
    rows = make_rows(texts, 64, BOS, "error", 32, eos_id=EOS)
    batches = list(TrainStream(rows, BatchSpec("pack", 2, 64, ()), seed=0).batches(0))
    assert max(b["segment_ids"].max() for b in batches) >= 3
    packed = {}

    @jax.jit
    def log_probs(b):
        logits = apply(params, b["inputs"], cfg, b["positions"], b["segment_ids"])
        return token_log_probs(logits, b["targets"])

    for b in batches:
        lp = np.asarray(log_probs(b))
        for r in range(b["inputs"].shape[0]):
            for s in np.unique(b["segment_ids"][r][b["segment_ids"][r] > 0]):
                m = b["segment_ids"][r] == s
                packed[tuple(b["targets"][r, m].tolist())] = lp[r, m]
    assert len(packed) == len(texts)
    # Independent reference, one text per row (no packing), right-padded to one shape.
    seqs = [np.r_[x, EOS].astype(np.int32) for x in texts]
    tokens = np.zeros((len(seqs), 64), np.int32)
    mask = np.zeros((len(seqs), 64), np.int32)
    for i, q in enumerate(seqs):
        tokens[i, : len(q)], mask[i, : len(q)] = q, 1
    ref = np.asarray(
        jax.jit(score.sequence_log_likelihood, static_argnames="config")(params, tokens, mask, cfg)
    )
    inputs, positions, segs = score.shift_right(jnp.asarray(tokens), jnp.asarray(mask), BOS)
    ref_tok = np.asarray(
        token_log_probs(apply(params, inputs, cfg, positions, segs), jnp.asarray(tokens))
    )
    for i, q in enumerate(seqs):
        got = packed[tuple(q.tolist())]
        np.testing.assert_allclose(got, ref_tok[i, : len(q)], atol=1e-5)
        np.testing.assert_allclose(got.sum(), ref[i], rtol=1e-5, atol=1e-4)


def test_scoring_plan_joins_a_short_bucket_only_when_it_saves_a_call_or_costs_none():
    """A small set's buckets of less than a call join the next used one (one program instead of
    three, no more calls); a large set keeps its buckets; every row is scored once."""

    def summary(lengths):
        plan = scoring_plan(np.asarray(lengths), 4, (16, 32), 64)
        rows = np.sort(np.concatenate([idx for _, idx, _ in plan]))
        assert rows.tolist() == list(range(len(lengths)))  # every row once
        assert all(len(idx) <= n == scoring_rows(4, T, 64) for T, idx, n in plan)
        return [T for T, _, _ in plan]

    # 16 rows per call at 16 tokens, 8 at 32, 4 at 64: 2 + 1 + 1 rows = one call of 64
    assert summary([5, 12, 20, 50]) == [64]
    assert summary([5, 10, 12, 20, 30, 50]) == [64, 64]  # 3 calls apart
    # 16 short rows fill a call of 16: apart 1 + 1 calls, joined 16 + 1 rows at 32 = 3 calls
    assert summary([5] * 16 + [20]) == [16, 32]
    # joined only while no call is added: 9 + 9 rows at 32 take 3 calls, apart 1 + 2
    assert summary([5] * 9 + [20] * 9) == [32, 32, 32]


def test_scoring_batches_cover_rows_and_match_sequence_ll(tiny_model):
    cfg, params = tiny_model
    texts = random_texts(11, 1, 90, seed=4)
    rows = make_rows(texts, 64, BOS, "window", 32, eos_id=EOS)
    ll = np.zeros(len(texts))
    row_ll = jax.jit(
        lambda p, i, t, w, config: score.class_sums(
            p, dict(inputs=i, targets=t, weights=w), config, stacked=False
        )[:, 0],
        static_argnames="config",
    )
    seen, shapes = [], set()
    last_len = 0
    for idx, b in scoring_batches(rows, 4, (16, 32), 64):
        inputs, targets, weights = b["inputs"], b["targets"], b["weights"]
        shapes.add(inputs.shape)
        real = idx >= 0
        lengths = (b["segment_ids"][real] > 0).sum(1)
        assert lengths.min() >= last_len  # sorted by length
        last_len = lengths.max()
        assert np.all(weights[~real] == 0) and np.all(b["segment_ids"][~real] == 0)
        out = np.asarray(row_ll(params, inputs, targets, weights, cfg))
        np.add.at(ll, rows.text_index[idx[real]], out[real])
        seen += idx[real].tolist()
    assert sorted(seen) == list(range(len(rows.inputs)))
    assert shapes <= {(16, 16), (8, 32), (4, 64)}  # the same 256 tokens per call in every bucket
    short = [i for i, x in enumerate(texts) if len(x) + 1 <= 64]
    assert 0 < len(short) < len(texts)
    tokens = np.zeros((len(short), 64), np.int32)
    mask = np.zeros((len(short), 64), np.int32)
    for j, i in enumerate(short):  # texts that fit: exactly the sequence log-likelihood
        tokens[j, : len(texts[i]) + 1], mask[j, : len(texts[i]) + 1] = np.r_[texts[i], EOS], 1
    ref = np.asarray(score.sequence_log_likelihood(params, tokens, mask, cfg))
    np.testing.assert_allclose(ll[short], ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("stacked", [False, True])
def test_packed_scoring_equals_one_row_per_call_row(tiny_model, stacked):
    """eval.pack_texts: rows packed first-fit (longest first) into one shape, at most 3 per
    scoring row; each row's per-class sum equals the right-padded scoring's (one model, and
    two stacked class models under vmap), every row once, fewer token slots."""
    from gencls_jax.scoring import batched

    cfg, params = tiny_model
    if stacked:
        params = score.stack_params([params, jax.tree_util.tree_map(lambda x: 1.1 * x, params)])
    texts = random_texts(40, 1, 30, seed=5) + random_texts(6, 50, 90, seed=6)  # windows too
    rows = make_rows(texts, 64, BOS, "window", 32, eos_id=EOS)
    sizes = dict(batch_size=4, bucket_lengths=(16, 32), max_len=64, progress=False)
    plain = batched.run_rows(
        params, rows, functools.partial(batched.class_sums, config=cfg, stacked=stacked), **sizes
    )
    fn = functools.partial(batched.class_segment_sums, config=cfg, stacked=stacked, segments=3)
    packed = batched.run_rows(params, rows, fn, pack_texts=3, **sizes)
    np.testing.assert_allclose(np.stack(packed), np.stack(plain), rtol=1e-5, atol=1e-4)
    batches = list(scoring_batches(rows, 4, (16, 32), 64, pack_texts=3))
    idx = np.concatenate([i[i >= 0] for i, _ in batches])
    assert sorted(idx.tolist()) == list(range(len(rows.inputs)))
    assert {b["inputs"].shape for _, b in batches} == {(4, 64)}
    assert max(int(b["segment_ids"].max()) for _, b in batches) == 3
    assert padding_fraction(b for _, b in batches) < padding_fraction(
        b for _, b in scoring_batches(rows, 4, (16, 32), 64)
    )


def test_prefetch_to_device_in_order_and_errors():
    src = [{"x": np.full((2, 3), i, np.int32)} for i in range(7)]
    got = list(
        prefetch_to_device(
            iter(src), size=2, put=lambda b: jax.device_put(b, jax.devices("cpu")[0])
        )
    )
    assert [int(g["x"][0, 0]) for g in got] == list(range(7))
    assert isinstance(got[0]["x"], jax.Array)
    assert [int(g["x"][1, 2]) for g in prefetch_to_device(iter(src), size=0)] == list(range(7))

    def broken():
        yield src[0]
        raise RuntimeError("bad batch 1")

    it = prefetch_to_device(broken(), size=2)
    assert int(next(it)["x"][0, 0]) == 0
    with pytest.raises(RuntimeError, match="bad batch 1"):
        next(it)
    early = prefetch_to_device(iter(src), size=1)
    next(early)
    early.close()  # stops the producer thread without hanging


@pytest.mark.parametrize("progress", [True, False])
def test_score_rows_sums_rows_per_text_and_obeys_progress(tiny_model, capsys, progress):
    """The scoring loop (`batched.run_rows`: prefetch, late fetches, filler rows) summed per
    text equals the per-text sum of one batch's row sums; with progress=False it writes no
    progress bar."""
    import functools

    from gencls_jax.scoring.batched import class_sums, run_rows, text_sums

    cfg, params = tiny_model
    texts = random_texts(11, 1, 90, seed=5)
    rows = make_rows(texts, 64, BOS, "window", 32, eos_id=EOS)
    capsys.readouterr()
    per_text = run_rows(
        params,
        rows,
        functools.partial(class_sums, config=cfg, stacked=False),
        batch_size=4,
        bucket_lengths=(16, 32),
        max_len=64,
        prefetch=2,
        desc="scoring-test",
        progress=progress,
    )
    got = text_sums(rows, per_text, len(texts), 1)
    err = capsys.readouterr().err
    assert ("scoring-test" in err) == progress
    # one batch
    b = make_batch(rows, (64, [[i] for i in range(len(rows.inputs))]), len(rows.inputs))
    per_row = score.class_sums(params, b, cfg, stacked=False)[:, 0]
    ref = np.zeros(len(texts))
    np.add.at(ref, rows.text_index, np.asarray(per_row))
    assert got.shape == (len(texts), 1)
    np.testing.assert_allclose(got[:, 0], ref, rtol=1e-5, atol=1e-4)


def test_the_progress_total_counts_every_pass_from_the_first(tiny_model, monkeypatch):
    """run_passes builds each pass's rows lazily (in the prefetching thread); the bar's total
    still counts every pass's calls from the first one on (a label prefix's passes: the same
    texts), so its ETA is not half the truth during the first pass."""
    from gencls_jax.scoring import batched

    seen: list[tuple[int, int]] = []  # (total, calls done) at each update

    class Bar:
        def __init__(self, total, **kw):
            self.total, self.n = total, 0

        def update(self, n=1):
            self.n += n
            seen.append((self.total, self.n))

        def close(self):
            pass

    monkeypatch.setattr(batched, "tqdm", Bar)
    cfg, params = tiny_model
    rows = make_rows(random_texts(24, 1, 30, seed=7), 64, BOS, "window", 32, eos_id=EOS)
    fn = functools.partial(batched.class_sums, config=cfg, stacked=False)
    sizes = dict(batch_size=4, bucket_lengths=(16, 32), max_len=64)
    batched.run_passes(params, [lambda: rows] * 3, fn, **sizes)
    calls = len(list(scoring_batches(rows, 4, (16, 32), 64)))
    assert len(seen) == 3 * calls
    assert {t for t, _ in seen} == {3 * calls}


@pytest.mark.parametrize("pack", [0, 4])
def test_passes_of_equal_row_lengths_share_one_plan(tiny_model, monkeypatch, pack):
    """A pass whose rows have the first pass's lengths (label prefixes of one length) takes its
    plan again instead of planning while the device waits; a pass of other lengths plans its
    own. Every pass's results are its own rows' scores either way."""
    from gencls_jax.scoring import batched

    planned = []
    real = batched.scoring_calls
    monkeypatch.setattr(
        batched, "scoring_calls", lambda *a, **k: planned.append(1) or real(*a, **k)
    )
    cfg, params = tiny_model
    texts = random_texts(19, 1, 30, seed=8)
    same = [make_rows(texts, 64, BOS, "window", 32, EOS, [[900 + k]] * 19) for k in range(2)]
    other = make_rows(texts, 64, BOS, "window", 32, EOS, [[900, 901]] * 19)
    jitted = batched.class_segment_sums if pack else batched.class_sums
    kw = dict(segments=pack) if pack else {}
    fn = functools.partial(jitted, config=cfg, stacked=False, **kw)
    sizes = dict(batch_size=4, bucket_lengths=(16, 32), max_len=64, pack_texts=pack)
    got = batched.run_passes(params, [lambda r=r: r for r in (*same, other)], fn, **sizes)
    assert len(planned) == 2  # the first pass's plan, then the longer prefix's own
    for rows, per_row in got:
        alone = batched.run_rows(params, rows, fn, **sizes)
        np.testing.assert_allclose(np.stack(per_row), np.stack(alone), rtol=1e-6, atol=1e-5)
    assert not np.allclose(np.stack(got[0][1]), np.stack(got[1][1]))  # two prefixes, two scores


def reference_first_fit(lengths, order, capacity, max_items=0):
    """First fit one item at a time: the reference of `first_fit`'s runs placed at once."""
    room, bins = [], []
    for i in order:
        n = int(lengths[i])
        j = next((j for j, r in enumerate(room) if r >= n), len(bins))
        if j == len(bins):
            room.append(capacity)
            bins.append([])
        bins[j].append(int(i))
        room[j] -= n
        if max_items and len(bins[j]) >= max_items:
            room[j] = -1
    return bins


@pytest.mark.parametrize("max_items", [0, 3, 16])
def test_first_fit_places_runs_of_one_length_as_one_item_at_a_time(max_items):
    rng = np.random.default_rng(max_items)
    for _ in range(30):
        n = int(rng.integers(0, 300))
        lengths = rng.integers(1, int(rng.choice([8, 40, 70])), n)  # many repeats
        capacity = int(rng.choice([16, 64]))  # some items longer than a bin
        for order in (np.argsort(-lengths, kind="stable"), rng.permutation(n), np.arange(n)):
            got = first_fit(lengths, order, capacity, max_items)
            assert got == reference_first_fit(lengths, order, capacity, max_items)
