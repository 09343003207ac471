"""Decision rules and metrics against hand-computed values."""

import numpy as np
import pytest

from gencls_jax import evaluate as E


def test_metrics_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 1, 0, 1, 0, 2])
    m = E.classification_metrics(labels, pred, ["a", "b", "c"])
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


def test_stratified_sample_and_prior():
    labels = np.array([0] * 700 + [1] * 300)
    idx = E.stratified_sample(labels, 250, seed=1)
    assert np.bincount(labels[idx]).tolist() == [250, 250]
    np.testing.assert_array_equal(idx, E.stratified_sample(labels, 250, seed=1))
    assert not np.array_equal(idx, E.stratified_sample(labels, 250, seed=2))
    np.testing.assert_allclose(np.exp(E.log_prior(np.bincount(labels, minlength=2))), [0.7, 0.3])
