"""Explanations: per-token terms that add up to the decision margin, against independent
references (PyTorch float64 per-token log-probabilities; the classifier's own log-likelihoods
and decisions), for per_class and label_prefix runs, texts that fit, truncated and windowed;
token strings that join to the text; a self-contained HTML page; the discriminative refusal."""

import json
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import REPO, TOKENIZER_DIR

from configs.base import get_config
from gencls_jax.classifier import GenerativeClassifier
from gencls_jax.commands import explain as XC
from gencls_jax.data.batching import make_batch
from gencls_jax.data.rows import make_rows
from gencls_jax.data.tokenize import load_tokenizer, token_strings
from gencls_jax.errors import DataError, RunError
from gencls_jax.model import gpt2 as M
from gencls_jax.reports import explain_page as XP
from gencls_jax.scoring import explain as XS
from gencls_jax.scoring import score as S
from gencls_jax.scoring.decide import posteriors
from gencls_jax.scoring.score import stack_params

MODEL = M.config_for("tiny", vocab_size=50257, n_positions=64)
COUNTS = [30, 10, 20]  # a prior that is not uniform: the prior term is not 0
LONG = (
    "I went in expecting little. The first hour drags, the dialogue is wooden and the plot "
    "makes no sense at all; then the last act surprised me: a fine score, a brave ending, "
    "two superb performances.<br />Would I watch it again? Perhaps, on a rainy day. "
)
TEXTS = [
    "A wonderful film, café crème and naïve charm 😀 — 映画 I loved it.",
    "Dreadful.",
    LONG,
]


@pytest.fixture(scope="module")
def tok():
    if not TOKENIZER_DIR.is_dir():
        pytest.skip(f"no GPT-2 tokenizer at {TOKENIZER_DIR}")
    return load_tokenizer(str(TOKENIZER_DIR))


def spread(params):
    """Larger-than-init weights: the class models differ by whole nats."""
    return jax.tree_util.tree_map(lambda x: x * 3.0 if x.ndim > 1 else x, params)


def make_config(conditioning, long_text="truncate", max_len=32, rule="bayes"):
    c = get_config()
    c.model.conditioning = conditioning
    c.model.dtype = "float32"
    d = c.data
    d.tokenizer = str(TOKENIZER_DIR)
    d.clean_html = True
    d.max_len, d.bucket_lengths = max_len, (16, 32)
    d.long_text, d.window_stride = long_text, 9
    c.eval.batch_size = 4
    c.eval.decision = rule
    c.progress_bars = False
    return c


def classifier(tok, conditioning, k=2, offsets=None, **kw) -> GenerativeClassifier:
    names = ["neg", "pos", "mixed"][:k]
    info = dict(label_names=names, conditioning=conditioning, train_class_counts=COUNTS[:k])
    if conditioning == "per_class":
        params = stack_params([spread(M.init_params(MODEL, seed=s)) for s in range(k)])
    else:
        params = spread(M.init_params(MODEL, seed=0))
    return GenerativeClassifier(
        make_config(conditioning, **kw), info, MODEL, params, tok, fits={"offsets": offsets}
    )


def check_identity(clf, exps, texts):
    """Every explanation against the classifier's own scoring (an independent path: row sums on
    the device, `evaluate.scores`): log-likelihoods, scored tokens, decision, margin; and the
    exact identity sum(terms) + prior term == margin."""
    ds = clf._dataset(texts)
    ll, n_tok = clf.score_dataset(ds)
    rule, _ = clf.resolve_rule(clf.config.eval.decision)
    scores = clf.decision_scores(ll, n_tok, rule)
    names = clf.label_names
    for i, e in enumerate(exps):
        np.testing.assert_allclose(e.log_likelihoods, ll[i], rtol=1e-5, atol=1e-3)
        assert e.n_scored == n_tok[i]
        p, o = names.index(e.predicted), names.index(e.compared)
        assert p == int(np.argmax(scores[i])) and o != p
        assert abs(e.margin - (scores[i, p] - scores[i, o])) < 1e-6 * np.abs(ll[i]).max()
        assert abs(e.token_sum + e.prior_term - e.margin) < 1e-9 * max(1.0, abs(e.margin))
        np.testing.assert_allclose(
            e.token_log_probs[e.scored].sum(0), e.log_likelihoods, rtol=1e-12
        )
        assert np.all(e.terms[~e.scored] == 0) and np.all(np.isnan(e.token_log_probs[~e.scored]))
        # the token strings are the cleaned text, then the appended EOS
        assert "".join(e.tokens[:-1]) == e.text == texts[i].replace("<br />", "\n")
        assert e.eos and e.tokens[-1] == XS.EOS_SHOWN and e.token_ids[-1] == clf.tokenizer.eos_id
    return ll, n_tok


@pytest.mark.parametrize("conditioning", ["per_class", "label_prefix"])
@pytest.mark.parametrize("long_text", ["truncate", "window"])
def test_terms_sum_to_the_margin(tok, conditioning, long_text):
    """Short texts fit; the long one is truncated or read in windows of 32 tokens (each window
    of a label-prefix run starts with the class's prefix); the prior is not uniform."""
    clf = classifier(tok, conditioning, long_text=long_text)
    exps = XS.explain_texts(clf, TEXTS)
    check_identity(clf, exps, TEXTS)
    prior = np.log(np.array(COUNTS[:2]) / sum(COUNTS[:2]))
    for e in exps:
        p, o = clf.label_names.index(e.predicted), clf.label_names.index(e.compared)
        assert e.prior_term == pytest.approx(prior[p] - prior[o], abs=1e-12)
    long = exps[2]
    if long_text == "window":  # every token scored once, in its window
        assert long.scored.all() and not long.truncated and len(long.tokens) > 32 + 2 * 9
    else:
        assert long.truncated and long.n_scored < len(long.tokens)
        assert long.scored[: long.n_scored].all() and not long.scored[long.n_scored :].any()
    assert not exps[0].truncated and exps[0].scored.all()


@pytest.mark.parametrize("rule", ["calibrated", "per_token"])
def test_other_decision_rules_keep_the_identity(tok, rule):
    """calibrated: the offsets are the additive term; per_token: terms / |x|, no prior term."""
    clf = classifier(tok, "per_class", offsets=np.array([0.0, -7.5]), rule=rule)
    exps = XS.explain_texts(clf, TEXTS, rule=rule)
    check_identity(clf, exps, TEXTS)
    for e in exps:
        assert e.rule == rule
        if rule == "per_token":
            assert e.prior_term == 0
            np.testing.assert_allclose(
                e.terms[e.scored] * e.n_scored,
                e.token_log_probs[e.scored, clf.label_names.index(e.predicted)]
                - e.token_log_probs[e.scored, clf.label_names.index(e.compared)],
            )
        else:
            assert abs(e.prior_term) == 7.5


def test_calibrated_without_offsets_falls_back_and_says_so(tok):
    clf = classifier(tok, "per_class", rule="calibrated")
    (e,) = XS.explain_texts(clf, TEXTS[:1], rule="calibrated")
    assert e.rule == "bayes" and "no calibrated offsets" in e.note


def test_runner_up_and_against(tok):
    """K = 3: by default against the runner-up; --against picks the class; against the predicted
    class itself, the runner-up (noted); an unknown class is a one-line error."""
    clf = classifier(tok, "per_class", k=3)
    default = XS.explain_texts(clf, TEXTS)
    _, n_tok = check_identity(clf, default, TEXTS)
    for e in default:
        order = np.argsort(-e.scores)
        assert (e.predicted, e.compared) == tuple(clf.label_names[j] for j in order[:2])
        assert e.posteriors == pytest.approx(posteriors(e.scores))
    for i, e in enumerate(default):
        third = clf.label_names[int(np.argsort(-e.scores)[2])]
        (a,) = XS.explain_texts(clf, [TEXTS[i]], against=third)
        assert (a.predicted, a.compared, a.note) == (e.predicted, third, "")
        assert abs(a.token_sum + a.prior_term - a.margin) < 1e-9 * max(1.0, abs(a.margin))
        # the text alone and among others may be scored in rows of other lengths (the scoring
        # plan joins short buckets): the same sums to float32 rounding of the scores
        tol = 1e-6 * max(1.0, float(np.max(np.abs(e.scores))))
        want = e.scores.max() - e.scores[clf.label_names.index(third)]
        assert a.margin == pytest.approx(want, abs=tol)
        (same,) = XS.explain_texts(clf, [TEXTS[i]], against=e.predicted)
        assert same.compared == e.compared and "runner-up" in same.note
    with pytest.raises(DataError, match=r"^--against='nope' is not a class of this run"):
        XS.explain_texts(clf, TEXTS, against="nope")


def test_classifier_explain_is_explain_texts(tok):
    clf = classifier(tok, "label_prefix")
    e = clf.explain(TEXTS[1])
    (f,) = XS.explain_texts(clf, TEXTS[1:2])
    assert e.tokens == f.tokens and np.array_equal(e.terms, f.terms) and e.margin == f.margin
    assert e.predicted == clf.predict(TEXTS[1])  # both Bayes' rule with the training prior


def test_token_strings_attribute_a_split_character_to_its_last_token(tok):
    text = "naïve 😀 映画 — ok"
    ids = tok.encode_batch([text])[0]
    strings = token_strings(tok, ids)
    assert "".join(strings) == text and len(strings) == len(ids)
    assert "" in strings, "the emoji and the CJK characters span several tokens"
    for j in range(len(ids)):  # against decoding the first j + 1 tokens at once
        upto = tok.decode_batch([ids[: j + 1]])[0]
        if upto.endswith("\ufffd"):  # a character not complete yet: shown by a later token
            assert strings[j] == ""
        else:
            assert "".join(strings[: j + 1]) == upto


def test_class_token_values_match_float64_reference(hf_tiny_dir):
    """The pure per-token function against PyTorch float64 log-probabilities, on rows with a
    weight-0 prefix and window overlap; its row sums are `class_sums`."""
    torch = pytest.importorskip("torch")
    import transformers

    from gencls_jax.model.weights import load_pretrained

    config, params = load_pretrained(hf_tiny_dir)
    hf = transformers.GPT2LMHeadModel.from_pretrained(hf_tiny_dir).eval()
    rng = np.random.default_rng(0)
    texts = [rng.integers(0, 999, size=n).tolist() for n in (10, 100)]
    rows = make_rows(texts, 40, 999, "window", 15, eos_id=999, prefixes=[[5, 6, 7], [8]])
    b = make_batch(rows, (40, [[i] for i in range(len(rows.inputs))]), len(rows.inputs))
    ours = np.asarray(S.class_token_values(params, b, config, stacked=False))[..., 0]
    for r in range(len(rows.inputs)):
        with torch.no_grad():
            logits = hf(torch.tensor([rows.inputs[r].tolist()])).logits[0].double().numpy()
        logp = logits - logits.max(-1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
        ref = logp[np.arange(len(rows.targets[r])), rows.targets[r]] * rows.weights[r]
        np.testing.assert_allclose(ours[r, : len(ref)], ref, rtol=2e-5, atol=2e-5)
        assert np.all(ours[r, len(ref) :] == 0)
    sums = S.class_sums(params, b, config, stacked=False)[:, 0]
    np.testing.assert_allclose(ours.sum(1), np.asarray(sums), rtol=1e-5)
    stacked = stack_params([params, jax.tree_util.tree_map(lambda x: x * 1.1, params)])
    both = np.asarray(S.class_token_values(stacked, b, config, stacked=True))
    assert both.shape == (*ours.shape, 2)
    np.testing.assert_allclose(both[..., 0], ours, rtol=1e-6, atol=1e-6)


def test_explain_posteriors_are_at_the_runs_temperature(tok):
    """A run with a fitted temperature: explain's posteriors are predict's (scores / T), its
    margin and terms stay the rule's own (a temperature changes no decision)."""
    clf = classifier(tok, "per_class")
    (plain,) = XS.explain_texts(clf, TEXTS[:1])
    clf.temperatures = {"bayes": 4.0}
    (e,) = XS.explain_texts(clf, TEXTS[:1])
    assert e.temperature == 4.0 and e.to_json()["temperature"] == 4.0
    np.testing.assert_allclose(e.posteriors, posteriors(e.scores / 4.0), rtol=1e-12)
    np.testing.assert_allclose(e.posteriors, clf.posteriors(TEXTS[:1])[0], rtol=1e-5)
    assert e.margin == plain.margin and not np.allclose(e.posteriors, plain.posteriors)


def test_html_page_is_self_contained(tok, tmp_path):
    clf = classifier(tok, "label_prefix")
    exps = XS.explain_texts(clf, TEXTS)
    page = XP.render_html(exps, meta="run <x> & y")
    assert not re.search(r"https?://", page), "a network address in the page"
    assert not re.search(r"\b(src|href)\s*=", page, re.I), "an external resource in the page"
    assert not re.search(r"@import|url\(", page), "a CSS resource in the page"
    assert page.count("<section>") == 3 and "run &lt;x&gt; &amp; y" in page
    for e in exps:  # the totals, and every scored token's exact term in its title
        assert f"{e.margin:+.4f}" in page and f"{e.prior_term:+.4f}" in page
        for i, s in enumerate(e.tokens[:-1]):
            if e.scored[i] and s and (i == 0 or e.tokens[i - 1]):  # a token shown alone
                assert f"term {e.terms[i]:+.4f}" in page
    assert "not scored: past the text" in page  # the truncated review's unread tokens
    written = XC.write_explanations(exps, tmp_path / "why.html", meta="run <x> & y")
    assert written == (tmp_path / "why.html", tmp_path / "why.jsonl")
    jsonl = written[1]
    assert (tmp_path / "why.html").read_text() == page
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["margin"] for r in rows] == [e.margin for e in exps]
    for r in rows:
        terms = [t["term"] for t in r["tokens"] if t["term"] is not None]
        assert abs(sum(terms) + r["prior_term"] - r["margin"]) < 1e-9 * max(1, abs(r["margin"]))


def test_discriminative_run_is_refused_in_one_line(tok, tmp_path):
    info = dict(
        label_names=["neg", "pos"], conditioning="discriminative", train_class_counts=[1, 1]
    )
    clf = GenerativeClassifier(make_config("discriminative"), info, MODEL, None, tok)
    with pytest.raises(RunError, match=r"^a discriminative run has no per-token likelihoods"):
        XS.explain_texts(clf, TEXTS)
    # the command: refused from the run's files, before any parameter is restored
    wd = tmp_path / "disc"
    wd.mkdir()
    (wd / "config.json").write_text(make_config("discriminative").to_json_best_effort())
    (wd / "run_info.json").write_text(json.dumps(info))
    p = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "--mode=explain", f"--workdir={wd}", "--text=x"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode != 0 and last.startswith("error: ")
    assert "discriminative run: it has no per-token likelihoods to explain" in last


def test_page_and_jsonl_never_share_a_name(tok, tmp_path):
    """--output=x.jsonl names the jsonl (the page beside it is x.html); before, the page was
    written there and then overwritten by the jsonl."""
    exps = XS.explain_texts(classifier(tok, "label_prefix"), TEXTS)  # as the page test's
    page, jsonl = XC.write_explanations(exps, tmp_path / "x.jsonl")
    assert (page, jsonl) == (tmp_path / "x.html", tmp_path / "x.jsonl")
    assert page.read_text() == XP.render_html(exps)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["margin"] for r in rows] == [e.margin for e in exps]
    assert XC.output_paths("why") == (Path("why"), Path("why.jsonl"))


def test_a_long_texts_page_is_bounded_and_says_what_was_cut(tok, tmp_path):
    """A ~200 KB text truncated to 32 tokens: the page shows those, then `explain.tail_tokens`
    unread tokens, and says how many more were left off (before, every token was rendered)."""
    clf = classifier(tok, "per_class")
    clf.config.explain.tail_tokens = 20
    text = LONG.replace("<br />", " ") * 700
    (e,) = XS.explain_texts(clf, [text])
    total = len(tok.encode_batch([text])[0]) + 1  # the text's tokens and the EOS
    assert e.truncated and e.n_scored == 32 and total > 30_000
    assert len(e.tokens) == len(e.token_ids) == 32 + 20 and not e.eos
    assert e.cut == total - 52 and e.to_json()["tokens_cut"] == e.cut
    assert abs(e.token_sum + e.prior_term - e.margin) < 1e-9 * max(1.0, abs(e.margin))
    page, _ = XC.write_explanations([e], tmp_path / "long.html")
    assert page.stat().st_size < 60_000  # the text is ~200 KB; every token rendered: ~15 MB
    assert f"its last {e.cut} tokens are left off this page (explain.tail_tokens)" in (
        page.read_text()
    )
    # a tail long enough keeps every token, the EOS last, and cuts nothing
    clf.config.explain.tail_tokens = 100
    (short,) = XS.explain_texts(clf, [LONG])
    assert short.cut == 0 and short.eos and short.tokens[-1] == XS.EOS_SHOWN
    assert "".join(short.tokens[:-1]) == short.text
