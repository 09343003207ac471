"""The n-gram expert (scoring/ngram.py, issue 24): its log-probabilities against a dense float64
reference, the weight chosen on validation, and on a tiny run trained by run.py: w = 0 changes
nothing, eval's choice is what predict (a fresh process), the Python API, explain and
bench/ngram_expert.py apply."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from conftest import REPO, TOKENIZER_DIR, XLA_ARGS

from gencls_jax.classifier import GenerativeClassifier
from gencls_jax.commands import evaluate as E
from gencls_jax.data.sources import Dataset
from gencls_jax.errors import DataError
from gencls_jax.scoring import ngram

FILLER = "the a film was very quite really and it so but of".split()


def dense_log_probs(train: list[str], labels, k: int, test: list[str], alpha: float, order: int):
    """Multinomial NB over word 1..order grams, written out: dict counts of the n-grams as
    tuples (no hashing), V the n-grams seen in training, unseen ones left out; float64."""
    grams = [Counter() for _ in range(k)]

    def of(text):
        w = text.lower().split()
        return [tuple(w[i : i + n]) for n in range(1, order + 1) for i in range(len(w) - n + 1)]

    for t, y in zip(train, labels):
        grams[y].update(of(t))
    vocab = set().union(*grams)
    out = np.zeros((len(test), k))
    for i, t in enumerate(test):
        for g in of(t):
            if g in vocab:
                for c in range(k):
                    total = sum(grams[c].values())
                    out[i, c] += np.log((grams[c][g] + alpha) / (total + alpha * len(vocab)))
    return out


def test_log_probs_match_a_dense_float64_reference():
    rng = np.random.default_rng(1)  # a draw whose n-grams share no bucket (checked below)
    words = [f"w{i}" for i in range(30)]
    train = [" ".join(rng.choice(words, rng.integers(1, 9))) for _ in range(40)]
    labels = rng.integers(0, 3, 40)
    test = [" ".join(rng.choice(words + ["unseen"], rng.integers(0, 9))) for _ in range(15)]
    for order in (1, 2, 3):
        seqs = ngram.sequences(train)
        rows, feats = ngram.hashed(seqs, order, 2**20)
        distinct = {g for t in train for g in _grams(t, order)}
        assert len(np.unique(feats)) == len(distinct)  # no collision: the reference is exact
        counts = ngram.fit(seqs, labels, 3, order, 2**20)
        got = ngram.log_probs(counts, ngram.sequences(test), 0.3, order)
        ref = dense_log_probs(train, labels, 3, test, 0.3, order)
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    unknown = ngram.log_probs(counts, ngram.sequences(["unseen", ""]), 0.3, 3)
    assert np.all(unknown == 0)  # an n-gram no training text has is left out


def _grams(text: str, order: int):
    w = text.lower().split()
    return [tuple(w[i : i + n]) for n in range(1, order + 1) for i in range(len(w) - n + 1)]


def test_counts_file_round_trip(tmp_path):
    counts = ngram.fit(ngram.sequences(["a b c", "b c d", "x"]), [0, 1, -1], 2, 2, 64)
    assert counts.sum() == 5 + 5  # the unlabelled text is not counted
    ngram.save(tmp_path / "c.npz", counts)
    assert np.array_equal(ngram.load(tmp_path / "c.npz"), counts)


def test_choose_weight_takes_the_best_val_accuracy_ties_to_the_smallest():
    assert ngram.choose_weight({0.0: 0.8, 0.5: 0.9, 1.0: 0.9, 2.0: 0.85}) == 0.5
    assert ngram.choose_weight({0.0: 0.9, 1.0: 0.9}) == 0.0
    assert (
        ngram.choose_weight({0.0: 0.5, 0.5: 0.3, 1.0: 0.3, 2.0: 0.4}, lower_is_better=True) == 0.5
    )


def _keyed_texts(rng, n):
    """n texts of 5 filler words and their class's key word ('apple' / 'river'), classes
    alternating: the n-gram expert reads the class off the key."""
    y = np.arange(n) % 2
    return [" ".join([*rng.choice(FILLER, 5), ("apple", "river")[c]]) for c in y], y


def _fake(texts, labels):
    n = len(texts)
    return Dataset(
        list(texts), np.array(labels), [str(i) for i in range(n)], np.full(n, "real"), ("a", "b")
    )


@pytest.mark.parametrize("rule", ["bayes", "calibrated", "per_token"])
def test_fit_expert_chooses_the_weight_on_val(rule):
    """Constructed: the n-gram expert reads the class word, the 'GPT-2' scores are wrong on
    half of val: val prefers w > 0 under each rule; with scores already right on val, w = 0
    (a tie), and then no counts and no terms."""
    from gencls_jax import config_keys

    rng = np.random.default_rng(1)
    train, val = _fake(*_keyed_texts(rng, 40)), _fake(*_keyed_texts(rng, 20))
    config = config_keys.defaults()
    config.eval.ngram_weights = (0.0, 0.5, 1.0, 2.0)
    prior = np.log([0.5, 0.5])
    wrong = np.where(np.arange(20) % 4 < 2, 1.0, -1.0)  # half right, half wrong by one nat
    ll = np.stack([wrong * (val.labels == 0) - wrong * (val.labels == 1), np.zeros(20)], 1)
    n_tok = np.full(20, 7.0)
    counts, terms, report = E.fit_expert(
        config, {"train": train}, {"val": (val, ll, n_tok)}, prior, rule
    )
    assert report["val_accuracy_without"] == 0.5 and report["val_accuracy_with"] >= 0.9
    assert report["weight"] > 0 and report["val_accuracy"][f"{report['weight']:g}"] == max(
        report["val_accuracy"].values()
    )
    assert report["grid"] == [0.0, 0.5, 1.0, 2.0] and report["rule"] == rule
    nb = dense_log_probs(train.texts, train.labels, 2, val.texts, 0.3, 2)
    np.testing.assert_allclose(terms["val"], report["weight"] * nb, rtol=1e-12)
    right = 5.0 * np.stack([val.labels == 0, val.labels == 1], 1)
    counts, terms, report = E.fit_expert(
        config, {"train": train}, {"val": (val, right, n_tok)}, prior, rule
    )
    assert (counts, terms, report["weight"]) == (None, None, 0.0)
    assert report["val_accuracy_without"] == report["val_accuracy_with"] == 1.0
    counts, terms, report = E.fit_expert(config, {"train": train}, {}, prior, rule)
    assert (counts, terms, report["weight"]) == (None, None, 0.0)  # no val texts: off, said so
    assert report["note"] == "no validation texts: no weight chosen"
    config.eval.ngram_weights = (0.0,)  # off: today's classifier, nothing fitted or reported
    assert E.fit_expert(config, {"train": train}, {"val": (val, ll, n_tok)}, prior, rule) == (
        None,
        None,
        None,
    )


def _xent_reference(scores, labels):
    """min over T of the mean -log softmax(scores / T)[label], float64, on a dense log-T grid
    refined twice around its best point (not the golden-section search eval uses)."""
    lo, hi = np.log(1e-2), np.log(1e4)
    for _ in range(3):
        logt = np.linspace(lo, hi, 401)
        z = scores[None] / np.exp(logt)[:, None, None]
        top = z.max(-1, keepdims=True)
        lse = top[..., 0] + np.log(np.exp(z - top).sum(-1))
        nll = (lse - z[:, np.arange(len(labels)), labels]).mean(1)
        i = int(nll.argmin())
        step = logt[1] - logt[0]
        lo, hi = logt[i] - 2 * step, logt[i] + 2 * step
    return float(nll[i])


def test_cross_entropy_chooses_a_weight_that_accuracy_cannot_see():
    """Constructed: the 'GPT-2' scores get 16 of 20 val texts right by 10 nats and 4
    wrong by 12 nats, which no weight of the grid flips: accuracy ties at every w and keeps 0;
    the cross-entropy at each w's own fitted temperature (against a float64 grid search) sees
    the expert widen the right margins and chooses the w it minimises."""
    from gencls_jax import config_keys

    rng = np.random.default_rng(2)
    train, val = _fake(*_keyed_texts(rng, 40)), _fake(*_keyed_texts(rng, 20))
    y = val.labels
    margin = np.where(np.arange(20) < 16, 10.0, -12.0)  # for the true class
    ll = np.zeros((20, 2))
    ll[np.arange(20), y] = margin
    config = config_keys.defaults()
    config.eval.ngram_weights = (0.0, 0.25, 0.5, 1.0)
    prior, n_tok = np.log([0.5, 0.5]), np.full(20, 7.0)
    _, _, by_acc = E.fit_expert(config, {"train": train}, {"val": (val, ll, n_tok)}, prior, "bayes")
    assert set(by_acc["val_accuracy"].values()) == {0.8} and by_acc["weight"] == 0.0
    config.eval.ngram_select = "cross_entropy"
    counts, terms, rep = E.fit_expert(
        config, {"train": train}, {"val": (val, ll, n_tok)}, prior, "bayes"
    )
    nb = dense_log_probs(train.texts, train.labels, 2, val.texts, 0.3, 2)
    ref = {w: _xent_reference(ll + prior + w * nb, y) for w in (0.0, 0.25, 0.5, 1.0)}
    for w, x in ref.items():
        assert rep["val_cross_entropy"][f"{w:g}"] == pytest.approx(x, rel=1e-4)
    assert rep["select"] == "cross_entropy"
    assert rep["weight"] == min(ref, key=ref.get) > 0
    np.testing.assert_allclose(terms["val"], rep["weight"] * nb, rtol=1e-12)


@pytest.mark.parametrize(
    "key,value,msg",
    [
        ("ngram_weights", (-1.0, 0.0), "eval.ngram_weights must be >= 0"),
        ("ngram_weights", ("x",), "eval.ngram_weights must be a tuple of numbers"),
        ("ngram_weights", (), "eval.ngram_weights must be a tuple of numbers"),
        ("ngram_weights", (0.0, float("nan")), "eval.ngram_weights must be a tuple of numbers"),
        ("ngram_order", 0, "eval.ngram_order must be an integer in 1..5"),
        ("ngram_alpha", 0.0, "eval.ngram_alpha must be a number > 0"),
        ("ngram_buckets", 0, "eval.ngram_buckets must be an integer in 1..2**24"),
        ("ngram_select", "nll", "eval.ngram_select must be one of ('accuracy', 'cross_entropy')"),
    ],
)
def test_bad_settings_are_one_line_errors(key, value, msg):
    from gencls_jax import config_keys

    config = config_keys.defaults()
    setattr(config.eval, key, value)
    with pytest.raises(DataError, match="^" + re.escape(msg)):
        E.check_settings(config)


# --- a tiny run, trained by run.py -----------------------------------------------------------


def run_cli(*args):
    return subprocess.run(
        [sys.executable, str(REPO / "run.py"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _rows(rng, n, start):
    key = ("apple", "river")
    return [
        {
            "id": f"t{start + i}",
            "label": i % 2,
            "text": " ".join([*rng.choice(FILLER, 6), key[i % 2]]),
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny per_class run not trained (2 steps at lr 0: equal class models) on texts
    a class word decides, evaluated three times: as today (expert off), with a grid whose
    expert is all zero (1 bucket: every weight ties, w = 0), and with the expert on."""
    if not TOKENIZER_DIR.exists():
        pytest.skip("needs ../shared/data")
    folder = tmp_path_factory.mktemp("ngram")
    rng = np.random.default_rng(0)
    for name, rows in (("train", _rows(rng, 60, 0)), ("test", _rows(rng, 12, 100))):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    wd = folder / "run"
    common = [
        f"--workdir={wd}",
        "--config.progress_bars=False",
        *XLA_ARGS,
    ]
    p = run_cli(
        "--config=" + str(REPO / "configs" / "tiny.py"),
        *common,
        f"--config.data.train_path={folder / 'train.jsonl'}",
        f"--config.data.test_path={folder / 'test.jsonl'}",
        f"--config.data.cache_dir={folder / 'tok_cache'}",
        "--config.data.per_class_limit=0",
        "--config.data.val_size=20",
        "--config.eval.test_per_class=0",
        "--config.eval.sample_per_class=0",
        "--config.eval.train_sample_per_class=0",
        "--config.train.max_steps=2",
        "--config.train.lr=0.0",  # the class models stay equal: the n-gram expert decides
        "--config.train.tensorboard=False",
        "--config.train.plot=False",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = {}
    for name, extra in (
        ("off", []),
        ("zero", ["--config.eval.ngram_weights=(0,1,2)", "--config.eval.ngram_buckets=1"]),
        ("on", ["--config.eval.ngram_weights=(0,0.25,0.5,1,2)"]),
    ):
        if name != "off":
            p = run_cli("--mode=eval", *common, *extra)
            assert p.returncode == 0, p.stderr[-3000:]
        out[name] = {
            f: (wd / f).read_text()
            for f in (
                "predictions_val.jsonl",
                "predictions_test.jsonl",
                "metrics.json",
                "report.md",
            )
        }
    return dict(folder=folder, workdir=wd, **out)


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_weight_zero_leaves_every_prediction_and_log_likelihood_identical(runs):
    off, zero = runs["off"], runs["zero"]
    for f in ("predictions_val.jsonl", "predictions_test.jsonl"):
        assert zero[f] == off[f]
    m_off, m_zero = json.loads(off["metrics.json"]), json.loads(zero["metrics.json"])
    assert "ngram" not in m_off and m_zero["ngram"]["weight"] == 0.0
    for key in ("results", "calibration", "ood", "offsets", "accuracy"):
        assert m_zero[key] == m_off[key]
    assert (
        "- n-gram expert (word 1-2 grams, alpha 0.3): weight 0 of [0.0, 1.0, 2.0]"
        in zero["report.md"]
    )


def test_eval_chooses_the_expert_on_val_and_keeps_the_gpt2_log_likelihoods(runs):
    m = json.loads(runs["on"]["metrics.json"])["ngram"]
    assert m["weight"] > 0 and m["val_accuracy_with"] > m["val_accuracy_without"]
    assert m["val_accuracy"][f"{m['weight']:g}"] == max(m["val_accuracy"].values())
    assert (runs["workdir"] / ngram.COUNTS_FILE).stat().st_size < 10_000
    for f in ("predictions_val.jsonl", "predictions_test.jsonl"):
        on, off = _lines(runs["on"][f]), _lines(runs["off"][f])
        assert [r["log_likelihoods"] for r in on] == [r["log_likelihoods"] for r in off]
    assert f"weight {m['weight']:g} of [0.0, 0.25, 0.5, 1.0, 2.0]" in runs["on"]["report.md"]


def _reference_posteriors(runs, texts):
    """Bayes' rule on log p(x|c) (eval's, of the same texts) + w * the dense float64 n-gram
    reference of the run's training texts (val held out: the ids eval did not score as val),
    at the run's temperature."""
    metrics = json.loads(runs["on"]["metrics.json"])
    w, prior = metrics["ngram"]["weight"], np.array(metrics["prior"])
    val_ids = {r["id"] for r in _lines(runs["on"]["predictions_val.jsonl"])}
    train = _lines((runs["folder"] / "train.jsonl").read_text())
    train = [r for r in train if r["id"] not in val_ids]
    nb = dense_log_probs([r["text"] for r in train], [r["label"] for r in train], 2, texts, 0.3, 2)
    ll = np.array([r["log_likelihoods"] for r in _lines(runs["on"]["predictions_test.jsonl"])])
    s = (ll + w * nb + prior) / (metrics["calibration"]["temperature"] or 1.0)
    return np.exp(s - np.logaddexp.reduce(s, axis=1)[:, None])


def test_predict_in_a_fresh_process_equals_eval_with_the_expert(runs, tmp_path):
    out = tmp_path / "labels.jsonl"
    p = run_cli(
        "--mode=predict",
        f"--workdir={runs['workdir']}",
        f"--input={runs['folder'] / 'test.jsonl'}",
        f"--output={out}",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    rows, evals = _lines(out.read_text()), _lines(runs["on"]["predictions_test.jsonl"])
    names = ["neg", "pos"]
    assert [names.index(r["prediction"]) for r in rows] == [e["prediction"] for e in evals]
    post = np.array([[r["posteriors"][n] for n in names] for r in rows])
    assert post.max(1).tolist() == pytest.approx([e["confidence"] for e in evals], rel=1e-9)
    texts = [r["text"] for r in _lines((runs["folder"] / "test.jsonl").read_text())]
    np.testing.assert_allclose(post, _reference_posteriors(runs, texts), rtol=1e-6, atol=1e-9)
    labels = [e["label"] for e in evals]
    assert np.mean(post.argmax(1) == labels) > np.mean(
        np.array([e["log_likelihoods"] for e in evals]).argmax(1) == labels
    )  # the expert is what decides these texts


def test_api_and_explain_apply_the_expert(runs):
    clf = GenerativeClassifier.load(runs["workdir"])
    texts = [r["text"] for r in _lines((runs["folder"] / "test.jsonl").read_text())]
    np.testing.assert_allclose(
        clf.posteriors(texts), _reference_posteriors(runs, texts), rtol=1e-6, atol=1e-9
    )
    e = clf.explain(texts[0])
    assert e.ngram_term != 0 and "n-gram expert" in e.note
    assert e.token_sum + e.prior_term + e.ngram_term == pytest.approx(e.margin, abs=1e-9)
    assert e.to_json()["ngram_term"] == e.ngram_term


def test_bench_ngram_expert_reproduces_eval_from_its_outputs(runs, capsys):
    spec = importlib.util.spec_from_file_location("ngram_bench", REPO / "bench" / "ngram_expert.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = bench.main([f"--workdir={runs['workdir']}", "--grid=0,0.25,0.5,1,2"])
    m = json.loads(runs["on"]["metrics.json"])
    assert out["chosen_weight"] == m["ngram"]["weight"]
    assert out["gpt2_alone"]["val"] == m["ngram"]["val_accuracy_without"]
    assert out["combined"]["val"] == m["ngram"]["val_accuracy_with"]
    assert out["combined"]["test"] == m["results"]["test"]["bayes"]["accuracy"]
    assert out["ngram_alone"]["val"] == m["ngram"]["val_accuracy_alone"]
    assert "McNemar vs GPT-2 alone on test" in capsys.readouterr().out


def test_bench_reads_texts_by_id_and_label():
    """IMDB's ids repeat across its classes (a folder per label): the bench must find each
    predicted text by (id, label), not by id alone (it found the wrong review for half of them)."""
    spec = importlib.util.spec_from_file_location("ngram_bench", REPO / "bench" / "ngram_expert.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ds = Dataset(
        ["bad film", "good film", "dull plot", "fine plot"],
        np.array([0, 1, 0, 1]),
        ["0", "0", "1", "1"],
        np.full(4, "real"),
        ("neg", "pos"),
    )
    got = bench.texts_by_id(ds, ["1", "0", "0"], np.array([1, 1, 0]), "test")
    assert got == ["fine plot", "good film", "bad film"]
    with pytest.raises(SystemExit, match="1 predicted ids not in the data"):
        bench.texts_by_id(ds, ["2"], np.array([0]), "test")


def test_bad_weight_on_the_command_line_is_one_line(runs):
    p = run_cli("--mode=eval", f"--workdir={runs['workdir']}", "--config.eval.ngram_weights=(-1,0)")
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("error: eval.ngram_weights must be >= 0")


def test_a_run_whose_counts_file_is_gone_is_a_one_line_error(tmp_path):
    from gencls_jax.errors import RunError
    from gencls_jax.runs import workdir as wd

    metrics = {"ngram": {"weight": 0.5, "order": 2, "alpha": 0.3}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(RunError, match=r"ngram_counts.npz is missing .*: run --mode=eval again$"):
        wd.saved_fits(tmp_path)
    ngram.save(tmp_path / ngram.COUNTS_FILE, np.ones((2, 4), np.int64))
    fits = wd.saved_fits(tmp_path)
    assert fits["ngram"]["weight"] == 0.5 and fits["ngram_counts"].tolist() == [[1] * 4] * 2
    metrics["ngram"]["weight"] = 0.0  # chosen 0: no expert, and no file needed
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    assert wd.saved_fits(tmp_path)["ngram"] is None
