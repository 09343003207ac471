"""data.compact_vocab: the kept ids, the remapping and the tokenizer, against an independent
reference (collections.Counter over Python lists); the end-of-run summary's interval."""

import collections
import math

import numpy as np
import pytest
from conftest import TOKENIZER_DIR

from gencls_jax.data import compact
from gencls_jax.data.sources import Dataset
from gencls_jax.data.tokenize import Tokenizer, Tokens
from gencls_jax.reports.stats import wilson_interval
from gencls_jax.reports.summary import end_of_run


def reference_keep(lists, n, always):
    """The kept ids the slow way: forced ids first, then by count desc, id asc."""
    counts = collections.Counter(t for seq in lists for t in seq)
    rest = sorted((t for t in counts if t not in always), key=lambda t: (-counts[t], t))
    return (list(dict.fromkeys(always)) + rest)[:n]


def reference_map(seq, keep):
    pos = {t: i for i, t in enumerate(keep)}
    return [pos.get(t, len(keep)) for t in seq]


@pytest.mark.parametrize("n", [1, 3, 5, 50])
def test_kept_ids_match_counter_reference(n):
    rng = np.random.default_rng(n)
    lists = [list(rng.zipf(1.5, size=rng.integers(1, 30)) % 40) for _ in range(25)]
    flat = np.concatenate([np.asarray(x, np.int64) for x in lists])
    kept = compact.kept_ids(flat, n, always=(39, 39))
    assert kept.tolist() == reference_keep(lists, n, [39])
    vocab = compact.CompactVocab(kept)
    for seq in lists:
        assert vocab.map(np.asarray(seq)).tolist() == reference_map(seq, kept.tolist())
    assert vocab.vocab_size == len(kept) + 1


def test_ties_break_by_smaller_id_and_unseen_ids_are_not_kept():
    flat = np.asarray([7, 3, 7, 3, 5, 9, 9, 1])
    assert compact.kept_ids(flat, 3).tolist() == [3, 7, 9]  # 3, 7, 9 twice; 3 < 7 < 9
    assert compact.kept_ids(flat, 100).tolist() == [3, 7, 9, 1, 5]  # only the 5 seen ids


def _fake_tokenizer():
    words = ["<eos>", "the", "film", "was", "good", "bad", "dull"]
    ids = {w: i for i, w in enumerate(words)}
    return Tokenizer(
        encode_batch=lambda texts: [[ids[w] for w in t.split()] for t in texts],
        identity="fake",
        eos_id=0,
        bos_id=0,
        decode_batch=lambda seqs: [" ".join(words[i] for i in s) for s in seqs],
        vocab_size=len(words),
    )


def test_dataset_and_tokenizer_are_remapped_alike():
    tok = _fake_tokenizer()
    texts = ["the film was good", "the film was bad", "the film was good good"]
    lists = tok.encode_batch(texts)
    train = Dataset(texts, np.array([1, 0, 1]), ["a", "b", "c"], np.full(3, "real"), ("neg", "pos"))
    train = Dataset(**{**train.__dict__, "tokens": Tokens.from_lists(lists)})
    ctok, ds, vocab = compact.apply({"train": train}, tok, 5)
    keep = reference_keep(lists, 5, [0])
    assert vocab.kept.tolist() == keep  # EOS, then the(3) film(3) was(3) good(3)
    assert ctok.vocab_size == 6 and ctok.eos_id == 0 and ctok.bos_id == 0
    assert ctok.identity != tok.identity and ctok.compact_ids == tuple(keep)
    assert ds["train"].tokens.to_lists()[1].tolist() == reference_map(lists[1], keep)
    # a new text through the compact tokenizer reads as the training split does
    assert ctok.encode_batch(["the dull film"]) == [reference_map([1, 6, 2], keep)]
    assert ctok.decode_batch([[1, 5, 2]]) == ["the" + compact.OTHER_SHOWN + "film"]
    # a trained run's ids are reused as they are, whatever the split
    again, _, v2 = compact.apply({"train": train.subset(np.array([1]))}, tok, 5, keep)
    assert v2.kept.tolist() == keep and again.identity == ctok.identity
    assert compact.for_run(tok, {"compact_vocab_ids": keep}).identity == ctok.identity
    assert compact.for_run(tok, {}) is tok


def test_real_gpt2_tokenizer_compacted():
    if not TOKENIZER_DIR.exists():
        pytest.skip(f"{TOKENIZER_DIR} not present")
    from gencls_jax.data.tokenize import load_tokenizer

    tok = load_tokenizer(str(TOKENIZER_DIR))
    vocab = compact.CompactVocab(np.asarray([50256, 15496, 995]))
    ctok = vocab.tokenizer(tok)
    assert ctok.encode_batch(["Hello world", "Hello there"]) == [[1, 2], [1, 3]]
    assert ctok.eos_id == 0 and ctok.vocab_size == 4


def test_wilson_interval():
    lo, hi = wilson_interval(800, 1000)
    assert lo == pytest.approx(0.7741, abs=1e-4) and hi == pytest.approx(0.8236, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_end_of_run_summary():
    m = dict(
        n=1000,
        accuracy=0.8,
        per_class={"neg": dict(f1=0.79), "pos": dict(f1=0.81)},
    )
    text = end_of_run("runs/first", {"results": {"test": {"bayes": m}}}, "bayes", "train 1 s")
    assert "80.0% (95% CI 77.4-82.4%, 1000 texts)" in text
    assert "neg 79.0, pos 81.0" in text and "runs/first/report.md" in text
    assert "--mode=predict --workdir=runs/first" in text and "--mode=explain" in text
    assert "train 1 s" in text


def test_label_prefix_ids_are_reserved_only_by_the_label_prefix_mode():
    """A compacted label_prefix run keeps its prefixes' ids (were they 'other', the classes
    would read one prefix); per_class reserves none."""
    if not TOKENIZER_DIR.exists():
        pytest.skip(f"{TOKENIZER_DIR} not present")
    import ml_collections

    from gencls_jax import conditioning
    from gencls_jax.data.tokenize import load_tokenizer

    tok = load_tokenizer(str(TOKENIZER_DIR))
    template = "Label: {label_name}\n"
    config = ml_collections.ConfigDict({"data": {"label_prefix_template": template}})
    names = ("rare_class_a", "rare_class_b")
    want = [t for n in names for t in tok.encode_batch([template.format(label_name=n)])[0]]
    assert conditioning.get("label_prefix").reserved_ids(config, tok, names) == want
    assert conditioning.get("per_class").reserved_ids(config, tok, names) == []
