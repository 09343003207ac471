"""`eval.long_text` on a decision-trained run (issue 24, lever 5): the run trains on one row per
text (truncated), `--mode=eval --config.eval.long_text=window` scores its long texts with strided
windows. Checked against a float64 PyTorch computation of the same windows from the run's
export (every text token scored once, after BOS and the class's label prefix); texts that fit a
row score exactly as truncated; predict's `truncated` flag follows the scoring; a bad value is
one line."""

import json

import numpy as np
import pytest
from conftest import (
    IMDB_DIR,
    REPO,
    SHORT,
    TOKENIZER_DIR,
    XLA_ARGS,
    imdb_train,
    run_cli,
    write_jsonl,
)

from gencls_jax import conditioning
from gencls_jax.classifier import GenerativeClassifier
from gencls_jax.commands import predict as P
from gencls_jax.commands import train
from gencls_jax.data.inputs import Inputs
from gencls_jax.data.pipeline import label_prefixes
from gencls_jax.data.tokenize import load_tokenizer
from gencls_jax.runs import load, rules

pytestmark = pytest.mark.skipif(
    not (IMDB_DIR / "train.jsonl.gz").exists() or not TOKENIZER_DIR.exists(),
    reason="needs ../shared/data",
)

MAX_LEN, STRIDE = 32, 8  # a row holds 32 - 5 (label prefix) = 27 text tokens
WINDOW = ["--config.eval.long_text=window", f"--config.eval.window_stride={STRIDE}"]


def predictions(workdir) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, open(workdir / "predictions_val.jsonl"))}


@pytest.fixture(scope="module")
def decision_run(tmp_path_factory):
    """A tiny label_prefix run trained on the decision (2 steps) with 32-token rows, evaluated at
    the end as trained (truncated), then by `--mode=eval` with windows. Its validation file: two
    IMDB reviews (199 and 104 tokens: 4 to 8 rows' worth) and two short texts that fit a row."""
    folder = tmp_path_factory.mktemp("eval_long_text")
    reviews = imdb_train(10)
    val = [dict(r, id=f"va{i}") for i, r in enumerate(reviews[8:10] + reviews[18:20])]
    val = [val[0], val[2]] + [
        {"id": k, "label": i, "text": t} for i, (k, t) in enumerate(SHORT.items())
    ]
    write_jsonl(folder / "train.jsonl", reviews[:8] + reviews[10:18])
    write_jsonl(folder / "val.jsonl", val)
    wd = folder / "run"
    args = [
        f"--workdir={wd}",
        "--config=" + str(REPO / "configs" / "tiny.py"),
        f"--config.data.train_path={folder / 'train.jsonl'}",
        f"--config.data.val_path={folder / 'val.jsonl'}",
        f"--config.data.test_path={folder / 'val.jsonl'}",
        f"--config.data.cache_dir={folder / 'tok_cache'}",
        "--config.data.per_class_limit=0",
        "--config.model.conditioning=label_prefix",
        "--config.data.compact_vocab=0",  # the float64 reference reads GPT-2's own ids
        "--config.train.objective=decision",
        "--config.data.batching=bucket",
        f"--config.data.max_len={MAX_LEN}",
        "--config.data.bucket_lengths=(16,)",
        "--config.data.long_text=truncate",
        "--config.train.max_steps=2",
        "--config.train.lr=0.01",
        "--config.eval.splits=('val',)",
        "--config.eval.sample_per_class=0",
        "--config.eval.train_sample_per_class=0",
        "--config.eval.test_per_class=0",
        "--config.train.tensorboard=False",
        "--config.train.plot=False",
        "--config.progress_bars=False",
        *XLA_ARGS,
    ]
    p = run_cli(*args)
    assert p.returncode == 0, p.stderr[-3000:]
    truncated = predictions(wd)
    p = run_cli("--mode=eval", f"--workdir={wd}", *WINDOW, "--config.eval.splits=('val',)")
    assert p.returncode == 0, p.stderr[-3000:]
    return dict(workdir=wd, val=val, truncated=truncated, windowed=predictions(wd))


def windowed_ll(hf, bos: int, prefix: list[int], s: list[int], context: int) -> float:
    """float64 sum over the text tokens s[j] of log p(s[j] | BOS, prefix, the window's tokens
    before j): the first window reads s[:context], each next one STRIDE new tokens with the
    `context` tokens up to its end, each token scored once, in the window that first reaches
    it."""
    import torch

    total, scored = 0.0, 0
    while scored < len(s):
        stop = min(context, len(s)) if scored == 0 else min(scored + STRIDE, len(s))
        start = max(stop - context, 0)
        ids = [bos, *prefix, *s[start : stop - 1]]
        with torch.no_grad():
            logits = hf(torch.tensor([ids])).logits[0].double()
        logp = torch.log_softmax(logits, -1).numpy()
        total += sum(logp[len(prefix) + j - start, s[j]] for j in range(scored, stop))
        scored = stop
    return total


def test_eval_with_windows_scores_every_token_once_against_float64(decision_run):
    """Long texts: log p(text | c) of `--config.eval.long_text=window` = the float64 sum over
    the windows, n_tokens = every token with EOS; truncated at training, they scored fewer.
    Texts that fit a row: the very numbers of the truncated scoring."""
    pytest.importorskip("torch")
    import transformers

    hf = transformers.GPT2LMHeadModel.from_pretrained(decision_run["workdir"] / "export")
    hf = hf.double().eval()
    tok = load_tokenizer(str(TOKENIZER_DIR))
    config = rules.saved_config(decision_run["workdir"])
    names = list(config.data.label_names)
    prefixes = [p.tolist() for p in label_prefixes(tok, config.data.label_prefix_template, names)]
    context = MAX_LEN - max(len(p) for p in prefixes)
    texts = [r["text"] for r in decision_run["val"]]
    truncated, windowed = decision_run["truncated"], decision_run["windowed"]
    for r, tokens in zip(decision_run["val"], tok.encode_batch(texts)):
        s = [*tokens, tok.eos_id]
        ours, before = windowed[r["id"]], truncated[r["id"]]
        assert ours["n_tokens"] == len(s)
        if len(s) <= context:  # one row either way: the same numbers, to the bit
            assert ours["log_likelihoods"] == before["log_likelihoods"]
            continue
        assert len(s) > 2 * context and before["n_tokens"] == context
        ref = [windowed_ll(hf, tok.bos_id, p, s, context) for p in prefixes]
        np.testing.assert_allclose(ours["log_likelihoods"], ref, rtol=1e-5)  # class order


def test_predict_reads_windows_and_says_nothing_was_truncated(decision_run):
    """predict with eval.long_text=window (a --config of a trained run: rules.eval_config):
    eval's windowed numbers, `truncated` false; as trained, the long texts are truncated."""
    wd, val = decision_run["workdir"], decision_run["val"]
    inputs = Inputs(
        [r["text"] for r in val], [r["id"] for r in val], [r["id"] for r in val], [], "val"
    )
    given = rules.saved_config(wd)
    given.eval.long_text, given.eval.window_stride = "window", STRIDE
    config, used = rules.eval_config(wd, given)
    assert set(used) == {"eval.long_text", "eval.window_stride"}
    for clf, expect, cut in (
        (GenerativeClassifier.load(wd, config=config), decision_run["windowed"], False),
        (GenerativeClassifier.load(wd), decision_run["truncated"], True),
    ):
        for row in P.prediction_rows(clf, inputs, "bayes"):
            want = expect[row["id"]]
            assert row["n_tokens"] == want["n_tokens"]
            assert row["truncated"] == (cut and row["id"].startswith("va"))
            got = [row["log_likelihoods"][n] for n in clf.label_names]
            assert got == pytest.approx(want["log_likelihoods"], rel=1e-6, abs=1e-4)


def test_validation_during_training_reads_the_texts_as_eval_does(decision_run):
    """The figures that pick the best checkpoint (val accuracy, Bayes' rule's cross-entropy, at
    a uniform prior) come from eval.long_text's scoring: with windows, eval's windowed
    log-likelihoods; the validation LM loss stays that of the training rows (data.long_text)."""
    wd = decision_run["workdir"]
    config = rules.saved_config(wd)
    run = load.load_run(config, wd)
    tok, ds = conditioning.load_data(config, splits=("train", "val"), info=run.info)
    val, cond = ds["val"], conditioning.get("label_prefix")
    as_trained = train.validation_fn(config, cond, run.model_config, val, tok)(run.params)
    config.eval.long_text, config.eval.window_stride = "window", STRIDE
    got = train.validation_fn(config, cond, run.model_config, val, tok)(run.params)
    ll = np.array([decision_run["windowed"][i]["log_likelihoods"] for i in val.ids], np.float64)
    scores = ll + np.log(0.5)
    logp = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)
    ce = -logp[np.arange(len(val)), val.labels].mean()
    assert got["val_accuracy"] == np.mean(scores.argmax(1) == val.labels)
    assert got["val_decision_loss"] == pytest.approx(ce, rel=1e-6)
    assert got["val_decision_loss"] != pytest.approx(as_trained["val_decision_loss"], rel=1e-3)
    # as trained, the loss is read from the scores (the rows are the training rows); with
    # windows, from its own pass over the training rows: the same figure both ways
    assert got["val_loss"] == pytest.approx(as_trained["val_loss"], rel=1e-5)


def test_validation_loss_read_from_the_scores_equals_its_own_pass(tiny_run):
    """A per_class run whose scoring rows are its training rows: validation's LM loss comes from
    the accuracy's scores (each text under its own class model, summed over the tokens it
    scores), with no programs of its own (once the scoring's are compiled, a validation pass
    compiles nothing), and equals the loss evaluator's pass over the training rows
    (`test_train.py` checks that pass against float64 NumPy)."""
    from gencls_jax.reports.phases import compile_counts
    from gencls_jax.scoring.batched import score_dataset
    from gencls_jax.training import loop

    wd = tiny_run["workdir"]
    config = rules.saved_config(wd)
    run = load.load_run(config, wd)
    tok, ds = conditioning.load_data(config, splits=("train", "val"), info=run.info)
    val, cond = ds["val"], conditioning.get(config.model.conditioning)
    fn = train.validation_fn(config, cond, run.model_config, val, tok)
    score_dataset(run.params, cond, val, tok, config, run.model_config)  # the scoring's programs
    before = compile_counts()["compiles"]
    got = fn(run.params)
    assert compile_counts()["compiles"] == before  # no loss pass: no programs of its own
    stream = cond.train_stream(config, val, tok, batch_size=config.eval.batch_size)
    own_pass = loop.make_loss_evaluator(
        config, run.model_config, lambda: stream.batches(0), stacked=True
    )(run.params)["val_loss"]
    assert got["val_loss"] == pytest.approx(own_pass, rel=1e-5)
    assert np.isfinite(got["val_loss"]) and got["val_loss"] > 0


def test_a_bad_eval_long_text_is_one_line(decision_run):
    p = run_cli(
        "--mode=eval", f"--workdir={decision_run['workdir']}", "--config.eval.long_text=windows"
    )
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1] == (
        "error: eval.long_text must be one of ('', 'error', 'truncate', 'window') "
        "('' = data.long_text), got 'windows'"
    )
