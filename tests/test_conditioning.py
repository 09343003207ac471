"""Label-prefix rows (one text budget for every class, a prefix on every window), synthetic
samples scored as test texts, and `GenerativeClassifier`'s pure scorer against its
log-likelihoods."""

import json

import jax
import numpy as np
import pytest

from configs.base import get_config
from gencls_jax import conditioning as modes
from gencls_jax.classifier import GenerativeClassifier
from gencls_jax.commands import generate as synthetic
from gencls_jax.commands.evaluate import check_settings
from gencls_jax.data.pipeline import label_prefixes, load_datasets, rows
from gencls_jax.data.sources import Dataset
from gencls_jax.data.tokenize import Tokenizer, Tokens, load_tokenizer
from gencls_jax.errors import DataError
from gencls_jax.model import gpt2 as M
from gencls_jax.model.weights import load_pretrained
from gencls_jax.scoring import batched
from gencls_jax.scoring.batched import score_dataset
from gencls_jax.scoring.score import stack_params
from tests.conftest import TOKENIZER_DIR

torch = pytest.importorskip("torch")
import transformers  # noqa: E402

BOS = EOS = 999  # the tiny fixture model's <|endoftext|>
# Labels written as their token ids, so the toy tokenizer below gives prefixes of 5 and 3 tokens.
# The longer prefix comes first: a count taken from the last class alone would show.
TOY_LABELS = ("4 5 6 7 8", "1 2 3")
TOY = Tokenizer(lambda texts: [[int(w) for w in t.split()] for t in texts], "toy", EOS, BOS)


LP = modes.get("label_prefix")


def scoring_rows(config, ds, tok, label: int):
    """The rows class `label` scores `ds` with (the label-prefix conditioning's scoring pass)."""
    return rows(config, ds, tok, np.full(len(ds), label))


def toy_config(long_text: str):
    c = get_config()
    c.model.conditioning = "label_prefix"
    c.model.dtype = "float32"
    d = c.data
    d.label_prefix_template = "{label_name}"
    d.max_len, d.bucket_lengths, d.window_stride, d.long_text = 64, (32, 64), 16, long_text
    d.batching = "pad"
    c.train.batch_size = 4
    c.eval.batch_size = 4
    c.progress_bars = False
    return c


def toy_dataset(lengths, labels, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    lists = [rng.integers(0, 999, n).tolist() for n in lengths]
    n = len(lists)
    return Dataset(
        [" ".join(map(str, t)) for t in lists],
        np.asarray(labels, np.int32),
        [f"t{i}" for i in range(n)],
        np.array(["real"] * n),
        TOY_LABELS,
        Tokens.from_lists(lists),
    )


def windows(n: int, context: int, stride: int, long_text: str):
    """(first text token of the window's context, tokens it scores) of a text of n tokens:
    the first window scores the first `context` tokens, each next one `stride` more."""
    if long_text == "truncate":
        return [(0, range(min(n, context)))]
    out, scored = [], 0
    while scored < n:
        stop = min(context, n) if not out else min(scored + stride, n)
        out.append((max(stop - context, 0), range(scored, stop)))
        scored = stop
    return out


def scored_targets(rows, i):
    return np.concatenate(
        [t[w > 0] for t, w, k in zip(rows.targets, rows.weights, rows.text_index) if k == i]
    )


@pytest.mark.parametrize("long_text", ["truncate", "window"])
def test_label_prefix_rows_give_every_class_the_same_text_tokens(long_text):
    """Prefixes of 5 and 3 tokens: every class's rows (scoring and training) hold the text cut to
    max_len - 5 tokens, each row starts with BOS + the prefix (weight 0), no row exceeds max_len."""
    config = toy_config(long_text)
    ds = toy_dataset([150, 70, 58, 59, 10], [0, 1, 1, 0, 1])
    prefixes = [p.tolist() for p in label_prefixes(TOY, "{label_name}", TOY_LABELS)]
    assert [len(p) for p in prefixes] == [5, 3]
    context = 64 - 5
    train = LP.train_stream(config, ds, TOY).rows
    for c in range(2):
        rows = scoring_rows(config, ds, TOY, c)
        for i in range(len(ds)):
            s = ds.tokens[i].tolist() + [EOS]
            expect = [s[j] for _, scored in windows(len(s), context, 16, long_text) for j in scored]
            assert scored_targets(rows, i).tolist() == expect
            if ds.labels[i] == c:
                # training sees the tokens scoring sees
                assert scored_targets(train, i).tolist() == expect
        for r in range(len(rows.inputs)):
            p = prefixes[c]
            assert rows.inputs[r][: 1 + len(p)].tolist() == [BOS] + p
            assert rows.targets[r][: len(p)].tolist() == p and not rows.weights[r][: len(p)].any()
            assert len(rows.inputs[r]) <= 64
    for r in range(len(train.inputs)):
        p = prefixes[ds.labels[train.text_index[r]]]
        assert (
            train.inputs[r][: 1 + len(p)].tolist() == [BOS] + p
            and not train.weights[r][: len(p)].any()
        )


def test_label_prefix_row_errors_count_the_longest_prefix():
    ds = toy_dataset([58, 59], [1, 1])  # 59 and 60 tokens with EOS; 64 - 5 = 59 fit
    with pytest.raises(
        DataError,
        match=r"^text t1: 60 tokens, more than data.max_len=64 less the 5-token label prefix; set",
    ):
        scoring_rows(toy_config("error"), ds, TOY, 1)  # class 1's own prefix has 3 tokens
    config = toy_config("window")
    config.data.window_stride = 60
    with pytest.raises(
        DataError,
        match=r"^data.window_stride must be in \(0, data.max_len=64 "
        r"less the 5-token label prefix\], got",
    ):
        LP.train_stream(config, ds, TOY)
    config.data.max_len = 5
    with pytest.raises(
        DataError,
        match=r"^a label prefix of 5 tokens leaves no room for the text in data.max_len=5$",
    ):
        LP.train_stream(config, ds, TOY)


def test_decision_training_rows_keep_data_long_text_while_scoring_reads_eval_long_text():
    """A decision-trained run takes one row per text (data.long_text='truncate'); eval.long_text=
    'window' changes its scoring rows only. data.long_text='window' stays refused for it."""
    config = toy_config("truncate")
    config.eval.long_text = "window"
    ds = toy_dataset([150, 20, 61], [0, 1, 0], seed=1)
    stream = LP.decision_stream(config, ds, TOY)
    for k, trained in enumerate(stream.slices):
        assert len(trained.inputs) == len(ds)
        as_truncated = scoring_rows(toy_config("truncate"), ds, TOY, k)
        assert all(np.array_equal(a, b) for a, b in zip(trained.inputs, as_truncated.inputs))
        scored = LP.class_rows(config, ds, TOY, k)
        assert scored.text_index.tolist().count(0) == 1 + -(-(151 - 59) // 16)  # windows
    config.data.long_text = "window"
    with pytest.raises(DataError, match="needs one row per text: set data.long_text to"):
        LP.decision_stream(config, ds, TOY)


def test_bad_scoring_long_text_settings_are_one_line():
    """eval.long_text's value, and the scoring row errors, name the eval keys (a trained run's
    data.* keys cannot change; eval's can)."""
    ds = toy_dataset([150, 20], [0, 1])
    config = toy_config("truncate")
    config.eval.long_text = "windows"
    with pytest.raises(
        DataError,
        match=r"^eval.long_text must be one of \('', 'error', 'truncate', 'window'\) "
        r"\('' = data.long_text\), got 'windows'$",
    ):
        check_settings(config)
    config.eval.long_text, config.eval.window_stride = "window", -1
    with pytest.raises(DataError, match=r"^eval.window_stride must be >= 0"):
        check_settings(config)
    config.data.window_stride, config.eval.window_stride = 60, 0  # 64 - 5 = 59 text tokens a row
    room = r"must be in \(0, data.max_len=64 less the 5-token label prefix\], got 60$"
    with pytest.raises(DataError, match=r"^eval.window_stride \(0: data.window_stride\) " + room):
        LP.class_rows(config, ds, TOY, 0)
    config.data.window_stride, config.eval.window_stride = 16, 60
    with pytest.raises(DataError, match=r"^eval.window_stride " + room):
        LP.class_rows(config, ds, TOY, 0)
    config.eval.long_text = "error"
    with pytest.raises(DataError, match=r"; set eval.long_text to 'truncate' or 'window'$"):
        LP.class_rows(config, ds, TOY, 0)
    config.eval.long_text = "window"
    with pytest.raises(DataError, match=r"one row per text: set eval.long_text to 'truncate' or"):
        modes.get("discriminative").class_rows(config, ds, TOY, None)


@pytest.fixture(scope="module")
def hf_tiny(hf_tiny_dir):
    model_config, params = load_pretrained(hf_tiny_dir)
    hf = transformers.GPT2LMHeadModel.from_pretrained(hf_tiny_dir).eval().double()
    return model_config, params, hf


def ref_next_log_prob(hf, context, target) -> float:
    """float64 log p(target | context) from the PyTorch model run in float64."""
    with torch.no_grad():
        logits = hf(torch.tensor([context], dtype=torch.long)).logits[0, -1].numpy()
    logits = logits - logits.max()
    return float(logits[target] - np.log(np.exp(logits).sum()))


@pytest.mark.parametrize(
    "data_mode, eval_mode, pack",
    [
        ("truncate", "", 0),
        ("window", "", 0),
        ("truncate", "window", 0),
        ("window", "truncate", 0),
        ("window", "", 3),  # packed scoring rows (eval.pack_texts): a text's windows, apart
        ("truncate", "", 3),
    ],
)
def test_label_prefix_scores_match_float64_reference(hf_tiny, data_mode, eval_mode, pack):
    """log p(text | c) = sum over scored text tokens of log p(token | BOS, prefix_c, the window's
    preceding text tokens), each text token scored once; n_tokens counts them, per text. Scoring
    reads eval.long_text where set (a run trained on truncated rows scored with windows), else
    data.long_text; packed scoring rows give the same sums."""
    model_config, params, hf = hf_tiny
    config = toy_config(data_mode)
    config.eval.long_text = eval_mode
    config.eval.pack_texts = pack
    long_text = eval_mode or data_mode
    short = ([9, 14], [1, 0]) if pack else ([], [])  # rows that share a packed row
    ds = toy_dataset([150, 20, 61, *short[0]], [0, 1, 0, *short[1]], seed=1)
    ll, n_tokens = score_dataset(params, LP, ds, TOY, config, model_config)
    context = 64 - 5
    ref = np.zeros((len(ds), 2))
    counts = np.zeros(len(ds))
    for i in range(len(ds)):
        s = ds.tokens[i].tolist() + [EOS]
        for c, label in enumerate(TOY_LABELS):
            prefix = [int(w) for w in label.split()]
            for start, scored in windows(len(s), context, 16, long_text):
                for j in scored:
                    ref[i, c] += ref_next_log_prob(hf, [BOS] + prefix + s[start:j], s[j])
        counts[i] = sum(len(scored) for _, scored in windows(len(s), context, 16, long_text))
    if long_text == "window":
        want = [151, 21, 62, *(n + 1 for n in short[0])]
        np.testing.assert_array_equal(counts, want)  # every text token exactly once
    np.testing.assert_array_equal(n_tokens, counts)
    np.testing.assert_allclose(ll, ref, rtol=1e-5)


def test_eval_bucket_lengths_are_the_scoring_shapes_and_leave_scores_unchanged(
    hf_tiny, monkeypatch
):
    """eval.bucket_lengths replaces data.bucket_lengths as the scoring shapes only; a row scores
    the same in any shape (right padding under the causal mask), so the log-likelihoods equal
    those of the training shapes (which the float64 test above checks) to float32 rounding."""
    model_config, params, _ = hf_tiny
    config = toy_config("window")
    ds = toy_dataset([150, 20, 61, 9, 33], [0, 1, 0, 1, 1], seed=1)
    ll_train_shapes, n_train = score_dataset(params, LP, ds, TOY, config, model_config)
    widths = []
    real = batched.scoring_batches

    def spy(rows, batch_size, bucket_lengths, *args, **kw):
        for idx, b in real(rows, batch_size, bucket_lengths, *args, **kw):
            widths.append(b["inputs"].shape[1])
            yield idx, b

    monkeypatch.setattr(batched, "scoring_batches", spy)
    config.eval.bucket_lengths = (16, 24, 40, 48)
    # one row per call at max_len: each bucket fills its calls, none joins the next (the
    # scoring plan joins a bucket of less than a call into the next used one)
    config.eval.batch_size = 1
    ll, n = score_dataset(params, LP, ds, TOY, config, model_config)
    assert set(widths) <= {16, 24, 40, 48, 64} and {16, 24, 40, 48} & set(widths)
    np.testing.assert_array_equal(n, n_train)
    np.testing.assert_allclose(ll, ll_train_shapes, rtol=1e-6)


def test_label_prefix_builds_the_next_class_rows_while_the_device_scores(hf_tiny, monkeypatch):
    """One stream of batches for all class passes: class 1's rows are built (in the
    prefetching thread) before class 0's last batches are dispatched, not after they are all
    fetched, so the device does not wait for the host between passes."""
    model_config, params, _ = hf_tiny
    config = toy_config("truncate")
    config.eval.batch_size = 1  # several batches per pass
    ds = toy_dataset([5 + 7 * i for i in range(12)], [i % 2 for i in range(12)], seed=2)
    events = []
    real_rows, real_sums = LP.class_rows, batched.class_sums

    def rows_spy(config, ds, tok, k):
        events.append(("rows", k))
        return real_rows(config, ds, tok, k)

    def sums_spy(*args, **kw):
        events.append(("call", None))
        return real_sums(*args, **kw)

    monkeypatch.setattr(LP, "class_rows", rows_spy)
    monkeypatch.setattr(batched, "class_sums", sums_spy)
    score_dataset(params, LP, ds, TOY, config, model_config)
    calls = [e for e in events if e[0] == "call"]
    before = events[: events.index(("rows", 1))].count(("call", None))
    assert len(calls) >= 8 and before < len(calls) // 2


# --- real tokenizer, tiny random model: synthetic margins and the GenerativeClassifier -----------


@pytest.fixture(scope="module")
def tok():
    if not TOKENIZER_DIR.is_dir():
        pytest.skip(f"no GPT-2 tokenizer at {TOKENIZER_DIR}")
    return load_tokenizer(str(TOKENIZER_DIR))


MODEL = M.config_for("tiny", vocab_size=50257, n_positions=64)


def spread(params):
    """Larger-than-init weights: classes then differ by whole nats, so an extra token shows."""
    return jax.tree_util.tree_map(lambda x: x * 3.0 if x.ndim > 1 else x, params)


def run_params(conditioning):
    if conditioning == "per_class":
        return stack_params([spread(M.init_params(MODEL, seed=k)) for k in range(2)])
    return spread(M.init_params(MODEL, seed=0))


def real_config(conditioning, tmp_path):
    c = get_config()
    c.model.conditioning = conditioning
    c.model.dtype = "float32"
    d = c.data
    d.tokenizer = str(TOKENIZER_DIR)
    d.source = "jsonl"
    d.cache_dir = str(tmp_path / "cache")
    d.clean_html = True
    d.label_names = ("neg", "pos")
    d.max_len, d.bucket_lengths = 64, (32, 64)
    d.val_size = 0
    c.eval.batch_size = 4
    c.progress_bars = False
    return c


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("conditioning", ["per_class", "label_prefix"])
def test_synthetic_margin_equals_the_test_path_margin(conditioning, tok, tmp_path, monkeypatch):
    """A kept sample's margin is that of its decoded text read back as a test split and scored;
    a sample with no text once cleaned is not scored and not kept."""
    config = real_config(conditioning, tmp_path)
    g = config.generate
    g.per_class, g.min_tokens = 3, 1
    params = run_params(conditioning)
    info = dict(label_names=["neg", "pos"], conditioning=conditioning, train_class_counts=[1, 1])
    run = synthetic.load.LoadedRun(info, MODEL, params, 7, tok, None)
    monkeypatch.setattr(synthetic.load, "load_run", lambda *a, **k: run)
    # "Hello" in two pieces: decoded and re-tokenized, it is one
    hel, lo = tok.encode_batch(["Hel", "lo"])
    samples = [
        [
            tok.encode_batch(["Dull.<br />Two hours lost."])[0],
            hel + lo + tok.encode_batch([" there, dull"])[0],
            tok.encode_batch([" Boring"])[0],
            tok.encode_batch(["<br />"])[0],
        ],  # the last: blank once cleaned
        [
            tok.encode_batch(["A fine film, great cast."])[0],
            tok.encode_batch(["Loved it<br /><br />!"])[0],
            tok.encode_batch(["Wonderful"])[0],
        ],
    ]
    monkeypatch.setattr(synthetic, "sample_class", lambda params, mc, g, k, *a: samples[k])
    stats = synthetic.generate_synthetic(config, tmp_path)
    kept = [json.loads(line) for line in (tmp_path / g.output).read_text().splitlines()]
    assert stats["generated"] == 7 and len(kept) == 6 and "<br />" not in [r["text"] for r in kept]

    config.data.train_path = write_jsonl(
        tmp_path / "train.jsonl", [{"text": "x", "label": 0}, {"text": "y", "label": 1}]
    )
    config.data.test_path = write_jsonl(
        tmp_path / "test.jsonl", [{"text": r["text"], "label": r["label"]} for r in kept]
    )
    test = load_datasets(config, ("test",), tok)["test"]
    cond = modes.get(config.model.conditioning)
    ll, _ = score_dataset(params, cond, test, tok, config, MODEL)
    own = ll[np.arange(len(test)), test.labels]
    margin = own - ll[np.arange(len(test)), 1 - test.labels]
    np.testing.assert_allclose([r["margin"] for r in kept], margin, rtol=1e-6, atol=1e-4)


def classifier(conditioning, tok, tmp_path) -> GenerativeClassifier:
    info = dict(label_names=["neg", "pos"], conditioning=conditioning, train_class_counts=[3, 1])
    return GenerativeClassifier(
        real_config(conditioning, tmp_path), info, MODEL, run_params(conditioning), tok
    )


TEXTS = ["A wonderful film.", "Two hours I will never get back.<br />Never again.", "Meh"]


@pytest.mark.parametrize("conditioning", ["per_class", "label_prefix"])
def test_scorer_equals_log_likelihoods(conditioning, tok, tmp_path):
    """The pure (params, tokens, mask) scorer applies the run's EOS and label prefix itself."""
    clf = classifier(conditioning, tok, tmp_path)
    tokens, mask = clf.encode(TEXTS)
    assert tokens.shape == mask.shape == (3, int(mask.sum(1).max()))
    for i, t in enumerate(TEXTS):  # the texts' own tokens, cleaned as in training, right-padded
        own = tok.encode_batch([t.replace("<br />", "\n")])[0]
        assert tokens[i, : len(own)].tolist() == own
        assert mask[i].tolist() == [1] * len(own) + [0] * (tokens.shape[1] - len(own))
    ll = clf.log_likelihoods(TEXTS)
    np.testing.assert_allclose(clf.scorer(clf.params, tokens, mask), ll, rtol=1e-5)
    np.testing.assert_allclose(jax.jit(clf.scorer)(clf.params, tokens, mask), ll, rtol=1e-5)


def test_single_string_and_empty_text(tok, tmp_path):
    clf = classifier("per_class", tok, tmp_path)
    one = clf.predict(TEXTS[0])
    assert isinstance(one, str) and one == clf.predict(TEXTS)[0]
    np.testing.assert_allclose(
        clf.log_likelihoods(TEXTS[0]), clf.log_likelihoods(TEXTS)[0], rtol=1e-6
    )
    tokens, mask = clf.encode(TEXTS[0])
    assert tokens.shape == mask.shape == (1, 4)
    with pytest.raises(DataError, match=r"^texts\[1\]: text is empty$"):
        clf.predict(["fine", "  "])
    with pytest.raises(
        ValueError,
        match=r"^tokens of width 64 need 65 positions with the run's EOS and label prefix, more",
    ):
        clf.scorer(clf.params, np.ones((1, 64), np.int32), np.ones((1, 64), np.int32))
