"""Tokenization (real GPT-2 tokenizer) and its cache, splits, and the config-driven pipeline end to
end."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import transformers

from configs.base import get_config
from gencls_jax import conditioning
from gencls_jax.data import sources
from gencls_jax.data import tokenize as tk
from gencls_jax.data.pipeline import load_datasets, rows
from gencls_jax.data.splits import per_class_sample, stratified_split, val_counts
from gencls_jax.errors import DataError
from gencls_jax.system import network
from tests.conftest import TOKENIZER_DIR


@pytest.fixture(scope="module")
def hf_tok():
    if not TOKENIZER_DIR.is_dir():
        pytest.skip(f"no GPT-2 tokenizer at {TOKENIZER_DIR}")
    return transformers.AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))


@pytest.fixture(scope="module")
def tok(hf_tok):
    return tk.from_hf(hf_tok)


def counting(tok):
    calls = []

    def encode(texts):
        calls.append(len(texts))
        return tok.encode_batch(texts)

    return tk.Tokenizer(encode, tok.identity, tok.eos_id, tok.bos_id), calls


def test_real_tokenizer_ids(tok, hf_tok):
    assert tok.encode_batch(["Hello world"]) == [[15496, 995]]
    assert tok.eos_id == tok.bos_id == 50256
    texts = ["A film.\nGreat!", "naïve café <br /> ok", "x"]
    t = tk.tokenize_texts(texts, tok, "", batch_size=2)
    for i, s in enumerate(texts):
        np.testing.assert_array_equal(t[i], hf_tok(s)["input_ids"])
    assert t.flat.dtype == np.int32 and t.offsets[-1] == t.flat.size


def test_cache_hit_skips_tokenizer(tok, tmp_path):
    counted, calls = counting(tok)
    texts = [f"review number {i} is fine" for i in range(25)]
    a = tk.tokenize_texts(texts, counted, str(tmp_path), batch_size=10)
    assert calls == [10, 10, 5] and len(list(tmp_path.glob("*.npz"))) == 1
    b = tk.tokenize_texts(texts, counted, str(tmp_path), batch_size=10)
    assert calls == [10, 10, 5]  # second time: from the cache, tokenizer not called
    np.testing.assert_array_equal(a.flat, b.flat)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    tk.tokenize_texts(texts[:-1] + ["changed"], counted, str(tmp_path), batch_size=100)
    assert calls[-1] == 25  # other texts (source or cleaning changed): a miss
    other = tk.Tokenizer(counted.encode_batch, "another-vocab", 0, 0)
    tk.tokenize_texts(texts, other, str(tmp_path), batch_size=100)
    assert calls[-1] == 25 and len(calls) == 5  # other tokenizer: a miss


def test_tokens_take_and_concat():
    t = tk.Tokens.from_lists([[1, 2], [3], [4, 5, 6]])
    s = t.take([2, 0])
    assert [x.tolist() for x in s.to_lists()] == [[4, 5, 6], [1, 2]]
    c = s.concat(tk.Tokens.from_lists([[7]]))
    assert [x.tolist() for x in c.to_lists()] == [[4, 5, 6], [1, 2], [7]]


def test_load_tokenizer_falls_back_offline(monkeypatch, caplog):
    real = transformers.AutoTokenizer.from_pretrained

    def offline(name, **kw):
        if name == "gpt2":
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return real(name, **kw)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    monkeypatch.setattr(network, "offline", lambda: "")  # the hub answers, without the files
    with caplog.at_level(logging.WARNING):
        t = tk.load_tokenizer("gpt2", str(TOKENIZER_DIR))
    assert t.encode_batch(["Hello world"]) == [[15496, 995]] and "fallback" in caplog.text
    with pytest.raises(DataError, match=r"^tokenizer 'gpt2': could not load \(OSError"):
        tk.load_tokenizer("gpt2", "")


def test_stratified_split_and_limit():
    labels = np.repeat([0, 1, 2], [100, 40, 10])
    tr, va = stratified_split(labels, 0.1, seed=0)
    assert np.bincount(labels[va]).tolist() == [10, 4, 1]
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 150
    tr2, va2 = stratified_split(labels, 0.1, seed=0)
    np.testing.assert_array_equal(va, va2)
    assert not np.array_equal(va, stratified_split(labels, 0.1, seed=1)[1])
    _, vc = stratified_split(labels, 30, seed=0)  # a count, split in proportion
    assert np.bincount(labels[vc]).tolist() == [20, 8, 2]
    assert val_counts(np.array([1, 5]), 0.5).tolist() == [
        0,
        2,
    ]  # tie goes to class 0, which must keep its row
    with pytest.raises(DataError, match="no training rows"):
        val_counts(np.array([2, 2]), 4)
    sub = per_class_sample(labels, 7, 0, "train_limit")
    assert np.bincount(labels[sub]).tolist() == [7, 7, 7]
    assert np.bincount(labels[per_class_sample(labels, 20, 0, "train_limit")]).tolist() == [
        20,
        20,
        10,
    ]
    np.testing.assert_array_equal(sub, per_class_sample(labels, 7, 0, "train_limit"))  # seeded
    assert not np.array_equal(sub, per_class_sample(labels, 7, 1, "train_limit"))
    # Each purpose draws on its own stream: the test sample is not the training subset's rows.
    assert not np.array_equal(sub, per_class_sample(labels, 7, 0, "test"))


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def config(tmp_path):
    c = get_config()
    words = ["good", "bad", "odd"]
    rng = np.random.default_rng(0)
    rows = [
        {
            "id": i,
            "label": words[i % 3],
            "text": f"A {words[i % 3]} movie<br />" + " long" * int(rng.integers(1, 30)),
        }
        for i in range(60)
    ]
    d = c.data
    d.source = "jsonl"
    d.train_path = write(tmp_path / "train.jsonl", rows)
    d.test_path = write(tmp_path / "test.jsonl", rows[:9])
    d.label_names = ()
    d.cache_dir = str(tmp_path / "cache")
    d.val_size = 0.25
    d.clean_html = True
    d.max_len = 32
    d.bucket_lengths = (8, 16)
    c.train.batch_size = 4
    return c


def test_load_datasets_end_to_end(config, tok, tmp_path):
    d = config.data
    d.per_class_limit = 5
    d.extra_train_path = write(
        tmp_path / "extra.jsonl", [{"text": "synthetic good one", "label": "good"}]
    )
    ds = load_datasets(config, ("train", "val", "test"), tok)
    tr, va, te = ds["train"], ds["val"], ds["test"]
    assert tr.label_names == ("bad", "good", "odd")
    # the small-data protocol: 5 per class, of which a quarter (4 texts) are the validation part
    assert va.class_counts().tolist() == [2, 1, 1]
    assert tr.class_counts().tolist() == [3, 5, 4]  # + the synthetic 'good' text
    assert (tr.origin == "synthetic").sum() == 1 and tr.texts[-1] == "synthetic good one"
    assert not set(tr.ids) & set(va.ids)
    assert "<br />" not in tr.texts[0] and "\n" in tr.texts[0]
    for split in (tr, va, te):
        for i in range(len(split)):
            assert split.tokens[i].tolist() == tok.encode_batch([split.texts[i]])[0]
    counted, calls = counting(tok)
    load_datasets(config, ("train", "val", "test"), counted)
    assert calls == []  # everything from the cache the second time


def test_load_datasets_chooses_rows_by_label_then_tokenizes_only_those(config, tok, tmp_path):
    """Validation hold-out, per-class limit and the eval.test_per_class sample are the rows the
    split functions pick from the labels (in file order); only those texts reach the tokenizer."""
    d = config.data
    d.per_class_limit = 5
    config.eval.test_per_class = 2
    names = ["bad", "good", "odd"]
    train_rows = [json.loads(line) for line in Path(d.train_path).read_text().splitlines()]
    test_rows = [
        {"id": 100 + i, "label": names[i % 3], "text": f"test review {i}<br />"} for i in range(30)
    ]
    d.test_path = write(tmp_path / "test30.jsonl", test_rows)
    counted, calls = counting(tok)
    ds = load_datasets(config, ("train", "val", "test"), counted)
    labels = np.array([names.index(r["label"]) for r in train_rows])
    pool = per_class_sample(
        labels, 5, config.seed, "train_limit"
    )  # N per class, then val out of them
    tr, va = (pool[i] for i in stratified_split(labels[pool], d.val_size, config.seed))
    te = per_class_sample(
        np.array([names.index(r["label"]) for r in test_rows]), 2, config.seed, "test"
    )
    for split, idx, split_rows in (
        ("train", tr, train_rows),
        ("val", va, train_rows),
        ("test", te, test_rows),
    ):
        assert ds[split].ids == [str(split_rows[i]["id"]) for i in idx]
        assert ds[split].texts == [split_rows[i]["text"].replace("<br />", "\n") for i in idx]
        assert ds[split].labels.tolist() == [names.index(split_rows[i]["label"]) for i in idx]
        assert [t.tolist() for t in ds[split].tokens.to_lists()] == tok.encode_batch(
            ds[split].texts
        )
    assert sum(calls) == len(tr) + len(va) + len(te) == 11 + 4 + 6  # 5 per class, 4 of them val


def test_pipeline_streams(config, tok):
    ds = load_datasets(config, ("train", "val"), tok)
    pc = conditioning.get("per_class").train_stream(config, ds["train"], tok)
    b = next(iter(pc.batches(0)))
    assert b["inputs"].shape[:2] == (3, 4)
    assert np.all(b["targets"][b["segment_ids"] > 0][-1:] >= 0)
    for k in range(3):  # class k's batch holds class k's texts only
        texts = {
            tuple((t.tolist() + [tok.eos_id])[:32])
            for t, y in zip(ds["train"].tokens.to_lists(), ds["train"].labels)
            if y == k
        }
        seg = b["segment_ids"][k]
        for r in range(4):
            if seg[r].max() > 0:
                assert tuple(b["targets"][k, r][seg[r] == 1].tolist()) in texts
    config.model.conditioning = "label_prefix"
    config.data.batching = "pad"
    config.data.max_len = 64
    lp = conditioning.get("label_prefix").train_stream(config, ds["train"], tok)
    prefix = tok.encode_batch(["Review sentiment: good\n"])[0]
    found = 0
    for batch in lp.batches(0):
        for r in range(4):
            t = batch["targets"][r]
            if t[: len(prefix)].tolist() == prefix:
                found += 1
                assert (
                    np.all(batch["weights"][r, : len(prefix)] == 0)
                    and batch["weights"][r, len(prefix)] == 1
                )
                assert batch["inputs"][r, 0] == tok.bos_id
    assert found == (ds["train"].labels == 1).sum()
    scored = rows(config, ds["val"], tok, np.full(len(ds["val"]), 2))  # class 2's scoring pass
    odd = tok.encode_batch(["Review sentiment: odd\n"])[0]
    assert all(
        t[: len(odd)].tolist() == odd and w[: len(odd)].sum() == 0
        for t, w in zip(scored.targets, scored.weights)
    )


def test_pipeline_label_errors(config, tok, tmp_path):
    config.data.label_names = ("good", "bad", "odd", "meh")
    with pytest.raises(DataError, match=r"label\(s\) \['meh'\] have no examples"):
        load_datasets(config, ("train",), tok)
    config.data.label_names = ("good", "bad")
    with pytest.raises(DataError, match=r"train.jsonl:3: unknown label 'odd'"):
        load_datasets(config, ("train",), tok)
    config.data.label_names = ()
    config.data.clean_html = True
    config.data.extra_train_path = write(
        tmp_path / "x.jsonl", [{"text": "ok", "label": "bad"}, {"text": "<br />", "label": "bad"}]
    )
    with pytest.raises(DataError, match=r"x.jsonl:2: text is empty after cleaning"):
        load_datasets(config, ("train",), tok)


def test_split_seed_fixes_the_rows_while_seed_varies(config, tok):
    """data.split_seed: runs of other seeds hold out the same validation texts and use the same
    per-class subset (what an ensemble of seeds fits on); -1 follows `seed`, as before."""
    config.data.per_class_limit = 10

    def val_and_train_ids(seed, split_seed):
        config.seed, config.data.split_seed = seed, split_seed
        ds = load_datasets(config, ("train", "val"), tok)
        return sorted(ds["val"].ids), sorted(ds["train"].ids)

    assert val_and_train_ids(0, 7) == val_and_train_ids(1, 7)
    assert val_and_train_ids(3, -1) == val_and_train_ids(5, 3)
    assert val_and_train_ids(0, -1) != val_and_train_ids(1, -1)


@pytest.mark.parametrize("bars", [True, False])
def test_tokenizing_bar_follows_progress_bars(config, tok, monkeypatch, bars):
    """A large set's tokenizing bar shows only when `progress_bars` is on (logs of batch jobs)."""
    from gencls_jax.data import pipeline

    seen = {}

    def recorded(texts, *args, **kw):
        seen.update(kw)
        return None

    monkeypatch.setattr(pipeline, "tokenize_texts", recorded)
    config.progress_bars = bars
    ids = [str(i) for i in range(5001)]
    raw = sources.RawSplit([f"text {i}" for i in ids], ["a"] * 5001, ids, ids, "made here")
    pipeline.tokenize_dataset(config, sources.to_dataset(raw, ("a",)), tok)
    assert seen["progress"] is bars
