"""Tokenizing in worker processes (`data.tokenize_workers`) gives the ids of one process, cold or
warm cache; the vectorised `Tokens.take` equals the per-text gather."""

import gzip
import json
import logging
import os
import shutil
import threading

import numpy as np
import pytest
import transformers

from configs.base import get_config
from gencls_jax import conditioning
from gencls_jax.data import tokenize as tk
from gencls_jax.errors import DataError
from tests.conftest import IMDB_DIR, TOKENIZER_DIR


@pytest.fixture(scope="module")
def hf_tok():
    if not TOKENIZER_DIR.is_dir():
        pytest.skip(f"no GPT-2 tokenizer at {TOKENIZER_DIR}")
    return transformers.AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))


def imdb_rows(n: int) -> list[dict]:
    """The first n reviews of IMDB's train split (real lengths, <br />, non-ASCII)."""
    path = IMDB_DIR / "train.jsonl.gz"
    if not path.is_file():
        pytest.skip(f"no IMDB at {path}")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(next(f)) for _ in range(n)]


def test_pool_gives_the_ids_of_one_process_cold_and_warm(hf_tok, tmp_path, caplog):
    """The pretraining data (configs/pretrain_unsup.py's splits: unsup + train texts), as
    `train`'s data phase loads them: one pool tokenizes both files."""
    rows = imdb_rows(150)
    train, unsup = tmp_path / "train.jsonl", tmp_path / "unsup.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows[:100]))
    unsup.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in rows[100:]))
    c = get_config()
    c.model.conditioning, c.data.pretrain_splits = "unconditional", ("unsup", "train")
    d = c.data
    d.source, d.train_path, d.unsup_path, d.val_size = "jsonl", str(train), str(unsup), 0.1
    d.tokenizer, d.tokenize_batch_size, d.tokenize_pool_min_chars = str(TOKENIZER_DIR), 25, 0

    def load(workers: int, cache: str):
        d.tokenize_workers, d.cache_dir = workers, cache
        return conditioning.load_data(c, ("train", "val"))[1]

    with caplog.at_level(logging.INFO, logger="gencls_jax.data.tokenize"):
        cold = load(2, str(tmp_path / "cache"))
    assert caplog.text.count("starting 2 tokenizing processes") == 1  # one pool, two files
    assert caplog.text.count("in 2 processes") == 2 and tk._POOLS is None  # and it is ended
    warm = load(2, str(tmp_path / "cache"))
    alone = load(1, "")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2  # train + val, unsup
    assert len(cold["train"]) == 90 + 50 and len(cold["val"]) == 10
    for split in ("train", "val"):
        for other in (warm, alone):
            np.testing.assert_array_equal(cold[split].tokens.flat, other[split].tokens.flat)
            np.testing.assert_array_equal(cold[split].tokens.offsets, other[split].tokens.offsets)
        # the reference: transformers' own tokenizer, text by text
        for text, ids in zip(cold[split].texts, cold[split].tokens.to_lists()):
            assert ids.tolist() == hf_tok(text)["input_ids"]


def test_pool_size(hf_tok):
    enc = tk.from_hf(hf_tok).encode_batch
    cores = len(os.sched_getaffinity(0))
    assert tk.pool_size(0, 1000, 10**9, 10**6, enc) == min(cores, 1000)  # one per core
    assert tk.pool_size(8, 3, 10**9, 10**6, enc) == 3  # at most one per batch
    assert tk.pool_size(8, 100, 10**5, 10**6, enc) == 1  # too few characters to pay a pool
    assert tk.pool_size(8, 100, 10**9, 10**6, lambda texts: texts) == 1  # cannot travel
    with pytest.raises(DataError, match="data.tokenize_workers must be >= 0"):
        tk.pool_size(-1, 100, 10**9, 10**6, enc)


def test_take_equals_the_per_text_gather():
    rng = np.random.default_rng(0)
    lists = [rng.integers(0, 50_000, rng.integers(0, 40)).tolist() for _ in range(300)]
    tokens = tk.Tokens.from_lists(lists)
    for idx in (
        np.sort(rng.choice(300, 200, replace=False)),  # increasing: the mask path
        rng.permutation(300)[:50],  # any order: the gather path
        np.array([5, 5, 2]),  # repeats
        np.arange(300),  # everything
        np.zeros(0, np.int64),
    ):
        got = tokens.take(idx)
        assert got.flat.dtype == np.int32 and len(got) == len(idx)
        assert [x.tolist() for x in got.to_lists()] == [lists[i] for i in idx]
    joined = tk.Tokens.join([tokens.take([1, 2]), tokens.take([]), tokens.take([0])])
    assert [x.tolist() for x in joined.to_lists()] == [lists[1], lists[2], lists[0]]


def test_tokenizer_kept_in_the_cache(hf_tok, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(tk, "_plain_gpt2", lambda folder: None)  # a folder transformers converts
    folder, cache = tmp_path / "tok", str(tmp_path / "cache")
    shutil.copytree(TOKENIZER_DIR, folder)
    made = tk.load_tokenizer(str(folder), cache_dir=cache)
    kept = list((tmp_path / "cache").glob("tokenizer-*.json"))
    assert len(kept) == 1

    def no_transformers(*a, **k):
        raise AssertionError("transformers was asked")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_transformers)
    again = tk.load_tokenizer(str(folder), cache_dir=cache)  # from the cache alone
    texts = [r["text"] for r in imdb_rows(20)] + ["naïve café 😀 <|endoftext|>"]
    for t in (made, again):
        assert (t.identity, t.eos_id, t.bos_id, t.vocab_size) == (
            made.identity,
            hf_tok.eos_token_id,
            hf_tok.bos_token_id,
            50257,
        )
        ids = t.encode_batch(texts)
        assert ids == [hf_tok(x, add_special_tokens=False)["input_ids"] for x in texts]
        assert t.decode_batch(ids) == made.decode_batch(ids)
    (folder / "tokenizer_config.json").write_text(
        (folder / "tokenizer_config.json").read_text() + "\n"
    )
    with pytest.raises(AssertionError, match="transformers was asked"):  # other files: a miss
        tk.load_tokenizer(str(folder), cache_dir=cache)
    monkeypatch.undo()
    kept[0].write_text("{damaged")  # the same files (the key is the files, not the folder)
    with caplog.at_level(logging.WARNING, logger="gencls_jax.data.tokenize"):
        assert tk.load_tokenizer(str(TOKENIZER_DIR), cache_dir=cache).identity == made.identity
    assert f"cached tokenizer {kept[0]} does not load" in caplog.text
    assert json.loads(kept[0].read_text())["eos_id"] == hf_tok.eos_token_id  # made again


def test_encoder_skips_the_offsets_and_gives_the_same_ids(hf_tok):
    """HFEncoder asks the backend for ids without character offsets (encode_batch_fast, ~13%
    of a worker's time): the same ids as encode_batch and transformers, text by text."""
    backend = hf_tok.backend_tokenizer
    asked = []

    class Recording:  # the backend, noting which encoder the HFEncoder calls
        def __getattr__(self, name):
            asked.append(name)
            return getattr(backend, name)

    texts = [r["text"] for r in imdb_rows(5)] + ["", "  a\n\n b ", "naïve café 😀 <|endoftext|>"]
    got = tk.HFEncoder(Recording())(texts)
    assert asked == ["encode_batch_fast"]
    assert got == [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    assert got == [hf_tok(x, add_special_tokens=False)["input_ids"] for x in texts]


def test_workers_are_forked_from_a_server_not_spawned(hf_tok):
    """The workers come from a forkserver (it imports the package once; spawned workers each
    imported it, with JAX): their parent is not this process."""
    pool, own = tk._pool(2, tk.from_hf(hf_tok).encode_batch)
    try:
        assert own and pool.submit(os.getppid).result() != os.getpid()
    finally:
        pool.shutdown()


def test_later_files_are_read_ahead_in_a_thread(tmp_path, monkeypatch):
    """unsup (and test) files are read in a thread while train is tokenized, and give the
    splits of a sequential read; a bad one is still one DataError naming its row."""
    from gencls_jax.data import pipeline, sources

    rows = imdb_rows(30)
    train, unsup = tmp_path / "train.jsonl", tmp_path / "unsup.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows[:20]))
    unsup.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in rows[20:]))
    c = get_config()
    d = c.data
    d.source, d.train_path, d.unsup_path, d.tokenizer = "jsonl", str(train), str(unsup), "x"
    d.cache_dir, d.val_size = "", 0.1
    tok = tk.Tokenizer(lambda texts: [[len(t)] for t in texts], "len", 0, 0)
    threads = {}
    read = sources.read_jsonl

    def noting(path, *a, **k):
        threads[os.path.basename(path)] = threading.current_thread().name
        return read(path, *a, **k)

    monkeypatch.setattr(sources, "read_jsonl", noting)
    ds = pipeline.load_datasets(c, ("train", "unsup"), tok, min_classes=1)
    assert threads["train.jsonl"] == "MainThread"
    assert threads["unsup.jsonl"].startswith("read_ahead")
    assert ds["unsup"].texts == [r["text"] for r in rows[20:]]
    assert ds["unsup"].tokens.flat.tolist() == [len(r["text"]) for r in rows[20:]]
    unsup.write_text('{"text": "fine"}\n{"text": 3}\n')
    with pytest.raises(DataError, match=r"unsup.jsonl:2: field 'text' is a int"):
        pipeline.load_datasets(c, ("train", "unsup"), tok, min_classes=1)


def test_plain_gpt2_folder_is_built_without_transformers(hf_tok, tmp_path, monkeypatch):
    """OpenAI's GPT-2 files alone give transformers' own backend (same identity: the same cache
    keys; same ids and decoding) without asking transformers; any other folder (other special
    tokens or settings, more files, a file that does not parse) asks it."""
    ref = tk.from_hf(hf_tok)

    def no_transformers(*a, **k):
        raise AssertionError("transformers was asked")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_transformers)
    got = tk.load_tokenizer(str(TOKENIZER_DIR))
    assert got.encode_batch.backend.to_str() == ref.encode_batch.backend.to_str()
    assert (got.identity, got.eos_id, got.bos_id, got.vocab_size) == (
        ref.identity,
        hf_tok.eos_token_id,
        hf_tok.bos_token_id,
        50257,
    )
    texts = [r["text"] for r in imdb_rows(5)] + ["", "naïve café 😀 <|endoftext|> x"]
    ids = got.encode_batch(texts)
    assert ids == [hf_tok(x, add_special_tokens=False)["input_ids"] for x in texts]
    assert got.decode_batch(ids) == ref.decode_batch(ids)
    config = json.loads((TOKENIZER_DIR / "tokenizer_config.json").read_text())
    vocab = json.loads((TOKENIZER_DIR / "vocab.json").read_text())
    for i, (name, text) in enumerate(
        [
            ("tokenizer_config.json", json.dumps({**config, "eos_token": "<|x|>"})),
            ("tokenizer_config.json", json.dumps({**config, "padding_side": "left"})),
            ("tokenizer_config.json", json.dumps({**config, "tokenizer_class": "BertTokenizer"})),
            ("special_tokens_map.json", "{}"),
            ("tokenizer_config.json", "{broken"),
            ("vocab.json", json.dumps({k: v for k, v in vocab.items() if k != "<|endoftext|>"})),
        ]
    ):
        folder = tmp_path / str(i)
        shutil.copytree(TOKENIZER_DIR, folder)
        (folder / name).write_text(text)
        with pytest.raises(AssertionError, match="transformers was asked"):
            tk.load_tokenizer(str(folder))
