"""Issue 26, NumPy side: log p(text) and the OOD score against float64 references, the OOD
threshold at a keep rate, the temperature fit, the top-label ECE by hand, abstaining, AUROC,
and `decide.judge` (what eval and predict both compute per text)."""

import itertools
import math

import numpy as np
import pytest

from gencls_jax.errors import DataError
from gencls_jax.scoring import calibration as C
from gencls_jax.scoring import decide as D
from gencls_jax.scoring import ood as O


def reference_log_marginal(ll_row, prior) -> float:
    """log sum_c p(c) p(x|c) in Python floats, shifted by the first class's term (any shift is
    exact in exact arithmetic; it keeps exp() in range)."""
    terms = [float(v) + float(p) for v, p in zip(ll_row, prior)]
    return terms[0] + math.log(math.fsum(math.exp(t - terms[0]) for t in terms))


def test_log_marginal_against_float64_references():
    # by hand: p(x|a) = 0.2, p(x|b) = 0.3, p(a) = p(b) = 1/2 -> p(x) = 0.25
    got = O.log_marginal(np.log([[0.2, 0.3]]), np.log([0.5, 0.5]))
    assert got[0] == pytest.approx(math.log(0.25), abs=1e-15)
    # reviews of thousands of nats, float32 log-likelihoods: exp() alone would underflow
    rng = np.random.default_rng(0)
    ll = (-3.0 * rng.integers(10, 2000, (50, 1)) + rng.normal(0, 20, (50, 3))).astype(np.float32)
    prior = np.log([0.5, 0.3, 0.2])
    ref = [reference_log_marginal(row, prior) for row in ll]
    got = O.log_marginal(ll, prior)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-13)
    np.testing.assert_allclose(got, np.logaddexp.reduce(ll.astype(np.float64) + prior, axis=1))
    n_tok = rng.integers(1, 500, 50)
    np.testing.assert_allclose(O.ood_scores(ll, prior, n_tok), -np.asarray(ref) / n_tok, rtol=1e-13)


def test_threshold_keeps_the_share_of_validation_texts():
    val = np.random.default_rng(1).permutation(np.arange(1.0, 21.0))  # 1..20, shuffled
    assert O.keep_threshold(val, 0.95) == 19.0  # 19 of 20 kept
    assert O.keep_threshold(val, 0.5) == 10.0
    assert O.keep_threshold(val, 0.96) == 20.0  # ceil(19.2): at least 96% kept
    assert O.keep_threshold(val, 1.0) == 20.0
    assert O.keep_threshold(val, 0.01) == 1.0
    assert O.keep_threshold([3.0, 1.0, 1.0, 2.0], 0.5) == 1.0  # ties: both 1.0s kept
    for n, keep in itertools.product((7, 20, 1250), (0.7, 0.9, 0.95, 0.99)):
        s = np.random.default_rng(n).normal(size=n)
        kept = np.mean(s <= O.keep_threshold(s, keep))
        assert keep <= kept < keep + 1 / n + 1e-12, (n, keep, kept)
    for bad in (0, 1.5, -0.1, True, "0.9"):
        with pytest.raises(DataError, match=r"^eval.ood_keep must be in \(0, 1\]"):
            O.keep_threshold(val, bad)
    with pytest.raises(DataError, match="needs validation texts"):
        O.keep_threshold([], 0.95)


def test_ece_by_hand_with_fifteen_bins():
    conf = np.array([0.95, 0.9, 0.62, 0.58, 0.62, 0.3])
    correct = np.array([1, 0, 1, 1, 0, 0], bool)
    # bins of width 1/15: 0.95 -> (14/15, 1], 0.9 -> (13/15, 14/15], both 0.62 -> (9/15, 10/15],
    # 0.58 -> (8/15, 9/15], 0.3 -> (4/15, 5/15]; |acc - conf| per bin, weighted by its share
    by_hand = (abs(1 - 0.95) + abs(0 - 0.9) + 2 * abs(0.5 - 0.62) + abs(1 - 0.58) + 0.3) / 6
    assert C.ece(conf, correct, 15) == pytest.approx(by_hand, abs=1e-15)  # 0.31833...
    r = C.reliability(conf, correct, 15)
    assert r["count"].tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 1, 2, 0, 0, 0, 1, 1]
    assert r["accuracy"][9] == 0.5 and r["confidence"][9] == pytest.approx(0.62)
    # a bin's upper edge belongs to it: 1.0 in the last bin, 2/3 = 10/15 in bin 9
    assert C.reliability([1.0, 2 / 3], [True, True], 15)["count"][[9, 14]].tolist() == [1, 1]
    assert C.ece([0.8] * 10, [True] * 8 + [False] * 2, 15) == pytest.approx(0.0, abs=1e-15)
    assert math.isnan(C.ece([], [], 15))
    for bad in (0, 2.5, True):
        with pytest.raises(DataError, match="eval.ece_bins must be an integer >= 1"):
            C.ece(conf, correct, bad)


def test_temperature_fit_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (20000, 4))
    p = D.posteriors(logits / 2.5)  # the labels are drawn at temperature 2.5
    labels = (rng.random((20000, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    t, at_end = C.fit_temperature(logits, labels)
    assert not at_end and t == pytest.approx(2.5, rel=0.04)
    # the golden-section search finds the minimum of a fine grid over log T (its own reference)
    grid = np.exp(np.linspace(np.log(1), np.log(5), 401))  # steps of 0.4% in T
    best = grid[np.argmin([C.nll(logits, labels, g) for g in grid])]
    assert t == pytest.approx(best, rel=5e-3)
    assert C.nll(logits, labels, t) <= min(C.nll(logits, labels, g) for g in grid) + 1e-9
    # scores that separate every validation text: the likelihood wants T -> 0, the fit says so
    t, at_end = C.fit_temperature(np.array([[5.0, 0.0], [0.0, 3.0]]), np.array([0, 1]))
    assert at_end and t == pytest.approx(C.TEMPERATURE_RANGE[0], rel=1e-4)
    with pytest.raises(DataError, match="none were scored"):
        C.fit_temperature(np.zeros((0, 2)), np.zeros(0, int))


def test_abstaining_coverage_and_its_bad_thresholds():
    conf = np.array([0.99, 0.55, 0.8, 0.7, 0.95])
    ok = np.array([True, False, True, False, True])
    rows = C.abstain_table(conf, ok, (0.5, 0.75, 0.96, 0.999))
    assert [(r["answered"], r["coverage"], r["accuracy"]) for r in rows] == [
        (5, 1.0, 0.6),
        (3, 0.6, 1.0),  # 0.99, 0.8, 0.95
        (1, 0.2, 1.0),
        (0, 0.0, None),
    ]
    coverage, accuracy = C.coverage_curve(conf, ok)  # answered in order 0.99, 0.95, 0.8, 0.7, 0.55
    np.testing.assert_allclose(coverage, [0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(accuracy, [1, 1, 1, 0.75, 0.6])
    post = np.array([[0.7, 0.3], [0.5, 0.5], [0.2, 0.8]])
    assert C.answered(post, 0.7).tolist() == [True, False, True]  # at P is answered
    assert C.answered(post, None).tolist() == [True, True, True]
    for bad in (0, 1, 1.5, -0.2, True):
        with pytest.raises(DataError, match=r"^--abstain_below=.*: must be in \(0, 1\)"):
            C.answered(post, bad)


def test_auroc_by_hand_and_against_every_pair():
    assert O.auroc([1, 2, 3], [2, 4]) == pytest.approx(4.5 / 6)  # 2 vs 2 counts half
    assert O.auroc([1, 2], [3, 4]) == 1.0 and O.auroc([3, 4], [1, 2]) == 0.0
    assert math.isnan(O.auroc([], [1.0]))
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 6, 40).astype(float), rng.integers(2, 9, 30).astype(float)
    pairs = np.mean([(y > x) + 0.5 * (y == x) for x in a for y in b])
    assert O.auroc(a, b) == pytest.approx(pairs, abs=1e-12)


def test_judge_decides_at_the_temperature_and_threshold():
    ll = np.array([[-10.0, -12.0], [-40.0, -39.0], [-5.0, -9.0]])
    n_tok = np.array([4, 10, 3])
    prior = np.log([0.25, 0.75])
    j = D.judge(ll, n_tok, "bayes", prior, temperature=2.0, ood_threshold=3.0)
    s = ll + prior
    np.testing.assert_allclose(
        j.posteriors, np.exp(s / 2 - np.logaddexp.reduce(s / 2, axis=1)[:, None])
    )
    assert j.prediction.tolist() == [0, 1, 0] and j.temperature == 2.0
    np.testing.assert_allclose(j.confidence, j.posteriors.max(axis=1))
    marginal = np.logaddexp.reduce(s, axis=1)
    np.testing.assert_allclose(j.ood_scores, -marginal / n_tok)
    assert j.in_distribution.tolist() == (-marginal / n_tok <= 3.0).tolist() == [True, False, True]
    # no temperature: the scores' own softmax; no threshold: no in_distribution
    j = D.judge(ll, n_tok, "bayes", prior)
    np.testing.assert_allclose(j.posteriors, D.posteriors(s))
    assert j.temperature is None and j.in_distribution is None and j.ood_scores is not None
    # a classification head: log posteriors, no p(text)
    j = D.judge(
        np.log([[0.9, 0.1]]),
        np.array([3]),
        "bayes",
        np.zeros(2),
        ood_threshold=1.0,
        generative=False,
    )
    assert j.log_marginal is None and j.ood_scores is None and j.in_distribution is None


def test_eval_says_when_a_compact_vocabulary_merges_what_p_text_reads():
    """With data.compact_vocab, rare tokens share one id: metrics.json's `ood` says so (on the
    CPU first run, stdlib Python scored as more typical than the reviews: AUROC 0.00)."""
    from configs.base import get_config
    from gencls_jax.commands import evaluate as E

    config = get_config()
    fits = E.Fits(None, {}, {}, 3.0)
    judged = {
        "val": D.judge(np.array([[-10.0, -11.0]]), np.array([4]), "bayes", np.log([0.5, 0.5]))
    }
    out = E.ood_figures(config, judged, fits, generative=True)
    assert "note" not in out and out["threshold"] == 3.0 and out["splits"]["val"]["kept"] == 1.0
    config.data.compact_vocab = 2048
    out = E.ood_figures(config, judged, fits, generative=True)
    assert out["note"].startswith("data.compact_vocab=2048: every token outside the kept ids")
    assert E.ood_figures(config, judged, fits, generative=False) is None
