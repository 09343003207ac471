"""Decision rules and metrics against hand-computed values."""

import numpy as np
import pytest

from gencls_jax.reports import stats as ST
from gencls_jax.scoring import decide as E


def test_metrics_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 1, 0, 1, 0, 2])
    m = ST.classification_metrics(labels, pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion"] == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    # class a: precision 2/3, recall 2/3; b: 1/2, 1/2; c: 1, 1
    assert m["per_class"]["a"]["f1"] == pytest.approx(2 / 3)
    assert m["per_class"]["b"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["c"]["recall"] == 1.0
    assert m["f1_gap"] == pytest.approx(1 - 0.5)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)


def test_rules_and_calibration_recover_a_biased_model():
    """Class 1's model spends 30 nats less per text: Bayes misclassifies most of class 0;
    an offset fitted on validation removes the bias; per-token normalises by length."""
    rng = np.random.default_rng(0)
    n = 400
    labels = rng.integers(0, 2, n)
    n_tokens = rng.integers(50, 500, n).astype(float)
    signal = np.where(labels[:, None] == np.arange(2)[None, :], 5.0, 0.0) + rng.normal(0, 2, (n, 2))
    ll = -3.0 * n_tokens[:, None] + signal
    ll[:, 1] += 30.0
    prior = E.log_prior(np.bincount(labels, minlength=2))
    bayes = E.scores(ll, n_tokens, "bayes", prior).argmax(1)
    assert np.mean(bayes == labels) < 0.7
    off = E.fit_offsets(ll[:200], labels[:200])
    cal = E.scores(ll[200:], n_tokens[200:], "calibrated", prior, off).argmax(1)
    assert np.mean(cal == labels[200:]) > 0.9
    assert off[0] == 0 and -40 < off[1] < -20
    with pytest.raises(ValueError, match="needs offsets"):
        E.scores(ll, n_tokens, "calibrated", prior)
    with pytest.raises(ValueError, match="unknown decision rule"):
        E.scores(ll, n_tokens, "vote", prior)


def test_report_sample_and_prior():
    labels = np.array([0] * 700 + [1] * 300)
    m = ST.evaluate_split(
        np.zeros((1000, 2)),
        labels,
        np.ones(1000),
        ["a", "b"],
        np.log([0.7, 0.3]),
        None,
        ["bayes"],
        sample_per_class=250,
        seed=1,
    )
    assert m["bayes"]["n"] == 1000 and m["bayes"]["sample"]["n"] == 500  # 250 per class
    # the prior picks class a
    assert m["bayes"]["sample"]["accuracy"] == 0.5 and m["bayes"]["accuracy"] == 0.7
    np.testing.assert_allclose(np.exp(E.log_prior(np.bincount(labels, minlength=2))), [0.7, 0.3])


def _ll_with_signal(n, k, signal, seed=0):
    """[n, k] log-likelihoods of texts of 100-400 tokens at ~3 nats each; the true class gets
    +signal."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    base = -3.0 * rng.integers(100, 400, n)[:, None] + rng.normal(0, 1, (n, 1))
    return base + signal * (labels[:, None] == np.arange(k)[None]) + rng.normal(
        0, 0.01 * signal, (n, k)
    ), labels


def test_degenerate_warning_fires_on_identical_models_and_one_class_predictions():
    from configs.base import get_config

    ratio = get_config().eval.degenerate_margin_ratio
    names = ["a", "b", "c"]
    ll, labels = _ll_with_signal(60, 3, signal=5.0)
    # Identical class models: equal columns; the Bayes rule then predicts the majority class only.
    same = np.repeat(ll[:, :1], 3, axis=1)
    pred = E.scores(same, None, "bayes", E.log_prior([50, 30, 20])).argmax(1)
    msg = ST.degenerate_warning(same, labels, pred, names, margin_ratio=ratio, split="test")
    assert msg is not None and "\n" not in msg
    assert (
        "all 60 test predictions are 'a'" in msg and "3 classes" in msg and "median margin 0" in msg
    )
    # Barely different models (float noise), varied predictions: the margins alone give it away.
    noisy = same * (1 + 1e-7 * np.random.default_rng(1).normal(size=same.shape))
    msg = ST.degenerate_warning(
        noisy, labels, noisy.argmax(1), names, margin_ratio=ratio, split="val"
    )
    assert msg is not None and "val" in msg and "predictions are" not in msg
    # Trained models that still call everything one class (e.g. a strong bias): the predictions
    # give it away.
    msg = ST.degenerate_warning(
        ll, labels, np.zeros(60, int), names, margin_ratio=ratio, split="test"
    )
    assert msg is not None and "all 60 test predictions are 'a'" in msg and "margin" not in msg


def test_degenerate_warning_silent_on_a_working_classifier():
    from configs.base import get_config

    ratio = get_config().eval.degenerate_margin_ratio
    ll, labels = _ll_with_signal(60, 2, signal=5.0)  # ~5 nats margin on ~750-nat texts
    assert (
        ST.degenerate_warning(
            ll, labels, ll.argmax(1), ["neg", "pos"], margin_ratio=ratio, split="test"
        )
        is None
    )
    one = labels == 0  # a split with a single class: one predicted class is no sign of anything
    assert (
        ST.degenerate_warning(
            ll[one],
            labels[one],
            np.zeros(one.sum(), int),
            ["neg", "pos"],
            margin_ratio=ratio,
            split="test",
        )
        is None
    )


@pytest.mark.parametrize("b, c", [(10, 3), (0, 0), (7, 7), (400, 330)])
def test_mcnemar_against_exact_binomial(b, c):
    """Two-sided exact McNemar p against math.comb sums (integers, no floating tail tricks)."""
    import math

    a_right = np.array([True] * b + [False] * c + [True] * 50)
    b_right = np.array([False] * b + [True] * c + [True] * 50)
    t = ST.mcnemar(a_right, b_right)
    n, k = b + c, min(b, c)
    ref = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
    assert (t["a_only"], t["b_only"]) == (b, c)
    assert t["p_value"] == pytest.approx(ref, rel=1e-9)


def test_comparison_report_pairs_predictions_and_shows_synthetic_stats(tmp_path):
    import json

    from gencls_jax.reports import compare

    labels = np.array([0, 1] * 50)
    base_pred = labels.copy()
    base_pred[:20] = 1 - labels[:20]  # base: 80% right
    aug_pred = labels.copy()
    aug_pred[:2] = 1 - labels[:2]  # augmented: 98% right; 18 texts only it gets right
    (tmp_path / "synth").mkdir()
    stats = {
        "per_class": {
            n: {
                "generated": 10,
                "kept": 9,
                "mean_tokens": 123.0,
                "distinct_1": 0.4,
                "distinct_2": 0.8,
                "mean_margin": 5.5,
                "classified_as_own_class": 0.9,
            }
            for n in ("neg", "pos")
        }
    }
    (tmp_path / "synth" / "synthetic_stats.json").write_text(json.dumps(stats))
    for name, pred, extra in (
        ("base", base_pred, ""),
        ("aug", aug_pred, str(tmp_path / "synth" / "synthetic.jsonl")),
    ):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(
            json.dumps({"data": {"extra_train_path": extra}, "train": {"epochs": 6}})
        )
        metrics = ST.classification_metrics(labels, pred, ["neg", "pos"])
        (d / "metrics.json").write_text(
            json.dumps({"results": {"test": {"bayes": metrics}}, "accuracy": metrics["accuracy"]})
        )
        with open(d / "predictions_test.jsonl", "w") as f:
            for i in range(100)[::-1]:  # another order: pairing goes by id
                # ids repeat across classes, as IMDB's do (neg/0 and pos/0); pairing must not
                # merge them
                f.write(
                    json.dumps({"id": i // 2, "label": int(labels[i]), "prediction": int(pred[i])})
                    + "\n"
                )
    text = compare.comparison_report([tmp_path / "base", tmp_path / "aug", tmp_path / "never_ran"])
    p = ST.mcnemar(base_pred == labels, aug_pred == labels)["p_value"]
    assert (
        "| aug | 100 | 98.00% |" in text
        and "+18.00 points | 0 / 18 |" in text
        and f"{p:.3g}" in text
    )
    assert "| never_ran | - | not evaluated |" in text
    assert "| aug | neg | 10 | 9 | 123.0 | 0.400 | 0.800 | +5.5 | 90.00% |" in text
    assert (
        "**aug** vs base: 98.00% vs 80.00% (+18.00 points" in text
        and "on 100 paired test texts): better at alpha 0.05" in text
    )


def test_validation_figures_accuracy_and_bayes_cross_entropy():
    """Each epoch's validation figures from decision scores, against a per-text float64
    computation: the cross-entropy of Bayes' rule stays finite at scores of thousands of nats."""
    import math

    from gencls_jax.scoring import decide

    scores = np.array([[-1200.0, -1203.5], [-80.2, -79.9], [-5.0, -5.0], [-3000.0, -2990.0]])
    labels = np.array([0, 0, 1, 0])
    out = decide.validation_figures(scores, labels)
    losses = []
    for row, y in zip(scores.tolist(), labels.tolist()):
        m = max(row)
        losses.append(-(row[y] - m - math.log(sum(math.exp(v - m) for v in row))))
    assert out["val_accuracy"] == 1 / 4  # row 2's tie goes to class 0 (argmax), not its label
    assert out["val_decision_loss"] == pytest.approx(sum(losses) / 4, rel=1e-12)
    assert out["val_decision_loss"] == pytest.approx(
        (
            math.log1p(math.exp(-3.5))
            + math.log1p(math.exp(0.3))
            + math.log(2)
            + 10
            + math.log1p(math.exp(-10))
        )
        / 4,
        rel=1e-9,
    )
