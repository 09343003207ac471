"""run.py end to end on runs built so that the bugs other tests cannot see would show (issue 28,
item 12; BUILD_NOTES lists each planted bug and the test here that catches it):
- a run whose best checkpoint is not its last (early stopping stops one epoch after the best),
  so scoring the latest instead of the best changes the figures;
- imbalanced classes (3:1), so the class prior of Bayes' rule is not a constant;
- the decision objective through the command line with lm_weight != decision_weight, its
  logged loss against a float64 PyTorch recomputation from the exported parameters;
- Ctrl-C (a real SIGINT at a chosen step) then the same command, against an uninterrupted run,
  for per-class LMs and for the decision objective;
- in-domain pretraining, then a classifier started from its export;
- the discriminative baseline;
- a data file replaced under the same name, refused for training and for eval."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import IMDB_DIR, REPO, TOKENIZER_DIR, XLA_ARGS

pytestmark = pytest.mark.skipif(
    not (IMDB_DIR / "train.jsonl.gz").exists() or not TOKENIZER_DIR.exists(),
    reason="needs ../shared/data",
)

COUNTS = {0: 24, 1: 8}  # training texts per class (neg, pos): a 3:1 prior
PRIOR = np.log(np.array([COUNTS[0], COUNTS[1]], np.float64) / sum(COUNTS.values()))
COMMON = [
    *XLA_ARGS,  # the session's compilation cache, for every call
    "--config.data.tokenizer=" + str(TOKENIZER_DIR),
    "--config.data.source=jsonl",
    "--config.data.per_class_limit=0",
    "--config.data.max_len=64",
    "--config.data.bucket_lengths=(64,)",
    "--config.eval.test_per_class=0",
    "--config.eval.sample_per_class=0",
    "--config.eval.train_sample_per_class=0",
    "--config.train.log_every=1",
    "--config.train.plot=False",
    "--config.train.tensorboard=False",
    "--config.progress_bars=False",
]

# run.py with a real SIGINT sent to itself as its `at`-th training step starts (Ctrl-C at a
# known step: the run saves after that step and exits 130).
INTERRUPTED = """
import os, runpy, signal, sys
sys.path.insert(0, {repo!r})
from gencls_jax.training import step as train_step
real, at = train_step.compiled_train_step, {at}
def compiled_train_step(*args, **kw):
    tx, step = real(*args, **kw)
    calls = 0
    def counted(state, batch):
        nonlocal calls
        calls += 1
        if calls == at:
            os.kill(os.getpid(), signal.SIGINT)
        return step(state, batch)
    return tx, counted
train_step.compiled_train_step = compiled_train_step
sys.argv = ["run.py"] + sys.argv[1:]
runpy.run_path({run!r}, run_name="__main__")
"""


def run(*args, config="tiny.py", interrupt_at=None, check=True):
    """run.py with configs/<config> (None: no --config); `interrupt_at`: Ctrl-C at that step."""
    program = (
        ["-c", INTERRUPTED.format(repo=str(REPO), run=str(REPO / "run.py"), at=interrupt_at)]
        if interrupt_at
        else [str(REPO / "run.py")]
    )
    cmd = [
        sys.executable,
        *program,
        *(["--config=" + str(REPO / "configs" / config)] if config else []),
        *args,
    ]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    if check and p.returncode != (130 if interrupt_at else 0):
        raise AssertionError(f"{cmd} exited {p.returncode}:\n{p.stderr[-3000:]}")
    return p


def last_line(p) -> str:
    return p.stderr.strip().splitlines()[-1]


def snapshot(folder: Path) -> dict:
    return {
        str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


def records(workdir: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, open(workdir / "metrics.jsonl")) if r["kind"] == kind]


def metrics(workdir: Path) -> dict:
    return json.loads((workdir / "metrics.json").read_text())


def predictions(workdir: Path, split: str = "test") -> list[dict]:
    return [json.loads(line) for line in open(workdir / f"predictions_{split}.jsonl")]


def _imdb(path: Path, counts: dict, skip: int = 0) -> list[dict]:
    """The first `counts[label]` reviews of each label after `skip` of each, in file order, with
    ids of their own (IMDB's restart at 0 for each label)."""
    seen, out = {0: 0, 1: 0}, {0: [], 1: []}
    with gzip.open(path, "rt") as f:
        for line in f:
            r = json.loads(line)
            label = r["label"]
            seen[label] += 1
            if seen[label] > skip and len(out[label]) < counts[label]:
                out[label].append({**r, "id": f"{path.name}:{label}:{seen[label]}"})  # unique
            if all(len(out[k]) == counts[k] for k in out):
                return out[0] + out[1]
    raise AssertionError(f"{path} has too few reviews")


def _write(folder: Path, rows: dict[str, list[dict]]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rs in rows.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))
    return {name: folder / f"{name}.jsonl" for name in rows}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Train 24 neg + 8 pos, validation 8 + 8 (a file: the training counts are exactly COUNTS),
    test 12 + 12; each family of runs below reads its own copy (the refusal tests change one)."""
    rows = dict(
        train=_imdb(IMDB_DIR / "train.jsonl.gz", COUNTS),
        val=_imdb(IMDB_DIR / "train.jsonl.gz", {0: 8, 1: 8}, skip=40),
        test=_imdb(IMDB_DIR / "test.jsonl.gz", {0: 12, 1: 12}),
    )
    root = tmp_path_factory.mktemp("data")
    return {family: _write(root / family, rows) for family in ("shared", "pretrain", "disc")}


def data_args(files: dict[str, Path]) -> list[str]:
    return [f"--config.data.{split}_path={files[split]}" for split in ("train", "val", "test")]


# --- per-class LMs, imbalanced classes, the best checkpoint is not the last ------------------

# lr high enough that validation loss turns up within a few epochs; early stopping (patience 1)
# then ends the run one epoch after its best, so the last checkpoint is not the best (the
# fixture asserts it: a run that kept improving for 8 epochs fails there, not silently).
PER_CLASS = [
    "--config.train.lr=0.03",
    "--config.train.epochs=8",
    "--config.train.early_stop_patience=1",
]
PER_CLASS_INTERRUPT = 4  # the first step of epoch 2 (an epoch is 3 steps: 24 neg rows / 8)


@pytest.fixture(scope="module")
def per_class(data, tmp_path_factory):
    wd = tmp_path_factory.mktemp("per_class") / "run"
    run(f"--workdir={wd}", *COMMON, *data_args(data["shared"]), *PER_CLASS)
    m = metrics(wd)
    assert m["stop_reason"] == "early_stop" and m["best_step"] < m["steps"], m  # not vacuous
    assert m["steps"] > PER_CLASS_INTERRUPT
    return wd


@pytest.fixture(scope="module")
def per_class_resumed(data, tmp_path_factory):
    wd = tmp_path_factory.mktemp("per_class_resumed") / "run"
    args = [f"--workdir={wd}", *COMMON, *data_args(data["shared"]), *PER_CLASS]
    run(*args, interrupt_at=PER_CLASS_INTERRUPT)
    assert [r["step"] for r in records(wd, "train")][-1] == PER_CLASS_INTERRUPT
    run(*args)
    return wd


@pytest.fixture(scope="module")
def imdb_test_texts(data):
    return {str(r["id"]): r["text"] for r in map(json.loads, open(data["shared"]["test"], "rb"))}


def test_the_scored_checkpoint_is_the_best_not_the_last(per_class, imdb_test_texts):
    """Catches: commands/train.py restoring the latest checkpoint, not the best, for scoring."""
    from gencls_jax.classifier import GenerativeClassifier

    m = metrics(per_class)
    assert m["evaluated_step"] == m["best_step"] < m["steps"]
    rows = predictions(per_class)
    texts = [imdb_test_texts[r["id"]] for r in rows]
    logged = np.array([r["log_likelihoods"] for r in rows])
    best = GenerativeClassifier.load(per_class, "best").log_likelihoods(texts)
    latest = GenerativeClassifier.load(per_class, "latest").log_likelihoods(texts)
    np.testing.assert_allclose(logged, best, rtol=1e-5)
    assert np.abs(logged - latest).max() > 1e-2  # the two checkpoints really differ


def check_bayes_rule(workdir: Path) -> None:
    """The prior in metrics.json and run_info.json, every test prediction, the accuracy and the
    confusion matrix against the log-likelihoods + the prior recomputed from the training
    file's class counts (24:8), and the classifier API's prior and Bayes scores."""
    from gencls_jax.classifier import GenerativeClassifier

    m = metrics(workdir)
    info = json.loads((workdir / "run_info.json").read_text())
    assert info["train_class_counts"] == [COUNTS[0], COUNTS[1]]
    np.testing.assert_allclose(m["prior"], PRIOR, rtol=1e-12)
    rows = predictions(workdir)
    ll = np.array([r["log_likelihoods"] for r in rows])
    labels = np.array([r["label"] for r in rows])
    pred = (ll + PRIOR).argmax(1)
    assert [r["prediction"] for r in rows] == pred.tolist()
    bayes = m["results"]["test"]["bayes"]
    assert bayes["accuracy"] == pytest.approx(np.mean(pred == labels))
    assert bayes["confusion"] == [
        [int(np.sum((labels == t) & (pred == p))) for p in range(2)] for t in range(2)
    ]
    clf = GenerativeClassifier.load(workdir)
    np.testing.assert_allclose(clf.log_prior, PRIOR, rtol=1e-12)
    n_tok = np.array([r["n_tokens"] for r in rows])
    np.testing.assert_allclose(clf.decision_scores(ll, n_tok, "bayes"), ll + PRIOR, rtol=1e-12)


def test_bayes_rule_uses_the_training_class_prior(per_class):
    """Catches: a flipped prior sign in evaluate.log_prior, evaluate.scores or where eval takes
    the prior (commands.evaluate.evaluate_params)."""
    check_bayes_rule(per_class)


def assert_same_run(uninterrupted: Path, resumed: Path) -> None:
    """Every logged step and validation, the stop, the best and scored steps and the test
    predictions of a run interrupted and resumed equal those of the run never interrupted."""
    a, b = uninterrupted, resumed
    for kind in ("train", "eval"):
        ra, rb = records(a, kind), records(b, kind)
        assert ra and [r["step"] for r in ra] == [r["step"] for r in rb]
        for key in ra[0].keys() - {"step", "kind", "tokens_per_s", "steps_per_s"}:
            np.testing.assert_allclose(
                [r[key] for r in ra], [r[key] for r in rb], rtol=1e-6, err_msg=key
            )
    ma, mb = metrics(a), metrics(b)
    for key in ("stop_reason", "steps", "best_step", "evaluated_step"):
        assert ma[key] == mb[key], key
    assert (ma["train_calls"], mb["train_calls"]) == (1, 2)
    pa, pb = predictions(a), predictions(b)
    assert [r["prediction"] for r in pa] == [r["prediction"] for r in pb]
    np.testing.assert_allclose(
        [r["log_likelihoods"] for r in pa], [r["log_likelihoods"] for r in pb], rtol=1e-5
    )


def test_per_class_resume_after_ctrl_c_equals_the_uninterrupted_run(per_class, per_class_resumed):
    """Ctrl-C at step 4 (after epoch 1's validation), then the same command: imbalanced class
    models (3 and 1 updates per epoch), the early stop and the best step carried over."""
    assert_same_run(per_class, per_class_resumed)


# --- pretraining, then the decision objective from its export -------------------------------


@pytest.fixture(scope="module")
def pretrained(data, tmp_path_factory):
    """configs/pretrain_unsup.py made tiny: one unconditional LM of the training texts, exported.
    Another seed than the classifier's, so that its export is not the classifier's scratch init."""
    wd = tmp_path_factory.mktemp("pretrain") / "run"
    args = [
        f"--workdir={wd}",
        *COMMON,
        *data_args(data["pretrain"]),
        "--config.seed=1",
        "--config.model.size=tiny",
        "--config.model.dtype=float32",
        "--config.data.pretrain_splits=('train',)",
        "--config.train.epochs=1",
        "--config.train.batch_size=8",
        "--config.train.lr=3e-3",
        "--config.train.warmup_steps=1",
    ]
    run(*args, config="pretrain_unsup.py")
    assert (wd / "export" / "model.safetensors").exists()
    return wd, args


DECISION = [
    "--config.train.objective=decision",
    "--config.data.batching=bucket",
    "--config.train.lm_weight=1.0",
    "--config.train.decision_weight=0.03",  # configs/first_run.py's lambda
    "--config.model.dropout=0.0",
    "--config.train.epochs=1",
]
DECISION_INTERRUPT = 2  # mid epoch (4 steps of 8 texts)


def decision_args(wd, data, pretrained) -> list[str]:
    """From the pretrained export: its vocabulary, GPT-2's whole one (not tiny.py's compact)."""
    init = f"--config.model.init={pretrained[0] / 'export'}"
    vocab = "--config.data.compact_vocab=0"
    return [f"--workdir={wd}", *COMMON, *data_args(data["shared"]), *DECISION, init, vocab]


@pytest.fixture(scope="module")
def decision(data, pretrained, tmp_path_factory):
    wd = tmp_path_factory.mktemp("decision") / "run"
    run(*decision_args(wd, data, pretrained))
    return wd


@pytest.fixture(scope="module")
def decision_resumed(data, pretrained, tmp_path_factory):
    """Interrupted at step 2; the params of that checkpoint are kept (as Hugging Face folders,
    one per class) for the float64 reference of step 3, then the run is resumed."""
    wd = tmp_path_factory.mktemp("decision_resumed") / "run"
    args = decision_args(wd, data, pretrained)
    run(*args, interrupt_at=DECISION_INTERRUPT)
    from gencls_jax import conditioning
    from gencls_jax.runs import load, rules

    config = rules.saved_config(wd)
    loaded = load.load_run(config, wd, "latest")
    info, model_config, params, step = loaded.info, loaded.model_config, loaded.params, loaded.step
    assert step == DECISION_INTERRUPT
    folder = wd.parent / f"params_step_{step}"
    conditioning.get("per_class").export(folder, model_config, params, info["label_names"])
    run(*args)
    return wd, folder


def first_batches(workdir: Path, start: int):
    """The decision batch the run took at step `start` + 1 (epoch 0), as the run's own data
    pipeline makes it."""
    from gencls_jax import conditioning
    from gencls_jax.runs import rules

    config = rules.saved_config(workdir)
    tok, ds = conditioning.load_data(config, splits=("train",))
    stream = conditioning.get("per_class").decision_stream(config, ds["train"], tok)
    return next(iter(stream.batches(0, start)))


def float64_decision_terms(class_folders, batch, prior) -> tuple[float, float]:
    """(LM loss of the true class per token, mean cross-entropy of softmax_c(log p(x|c) +
    log p(c))) of a [K, B, T] decision batch, in float64 by Hugging Face's PyTorch GPT-2, one
    model per class (`class_folders`)."""
    torch = pytest.importorskip("torch")
    import transformers

    labels = batch["labels"]
    ll = []
    for k, folder in enumerate(class_folders):
        hf = transformers.GPT2LMHeadModel.from_pretrained(folder).double().eval()
        with torch.no_grad():
            logits = hf(torch.tensor(batch["inputs"][k], dtype=torch.long)).logits
        lp = torch.log_softmax(logits, -1).numpy()
        targets = np.maximum(batch["targets"][k], 0)
        tok_lp = np.take_along_axis(lp, targets[..., None], -1)[..., 0]
        ll.append(np.sum(batch["weights"][k] * tok_lp, axis=-1))
    ll = np.stack(ll, 1)  # [B, K]
    real = labels >= 0
    true = np.maximum(labels, 0)
    tokens = batch["weights"][true, np.arange(len(labels))].sum(-1)
    lm = -ll[real, true[real]].sum() / tokens[real].sum()
    scores = ll + prior
    logp = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)
    ce = -logp[real, true[real]].mean()
    return float(lm), float(ce)


def check_logged_step(workdir: Path, step: int, lm: float, ce: float) -> None:
    (r,) = [r for r in records(workdir, "train") if r["step"] == step]
    assert r["lm_loss"] == pytest.approx(lm, rel=1e-5)
    # the cross-entropy reads float32 sums of ~500 nats: ~1e-4 nats of rounding
    assert r["decision_loss"] == pytest.approx(ce, rel=1e-5, abs=2e-4)
    # the objective of configs/first_run.py: lm_weight x LM + decision_weight x cross-entropy
    assert r["train_loss"] == pytest.approx(1.0 * lm + 0.03 * ce, rel=1e-5)
    assert r["train_loss"] == pytest.approx(1.0 * r["lm_loss"] + 0.03 * r["decision_loss"])


def test_decision_objective_from_the_pretrained_export_against_float64(decision, pretrained):
    """Step 1 of a decision run from `model.init=<pretrain>/export`: both class models are the
    export, so its logged LM term is the export's float64 loss on the batch and its
    cross-entropy is the prior's. Catches: lm_weight and decision_weight swapped (the loss
    would be 0.03 x LM + 1 x CE), a flipped prior in the decision objective, an init that
    ignores model.init."""
    export = pretrained[0] / "export"
    lm, ce = float64_decision_terms([export, export], first_batches(decision, 0), PRIOR)
    check_logged_step(decision, 1, lm, ce)


def test_decision_objective_of_trained_class_models_against_float64(decision_resumed):
    """Step 3, after two updates: the class models differ, so the cross-entropy reads their
    log-likelihoods too; recomputed from the step-2 checkpoint."""
    wd, folder = decision_resumed
    classes = [folder / "neg", folder / "pos"]
    lm, ce = float64_decision_terms(classes, first_batches(wd, DECISION_INTERRUPT), PRIOR)
    check_logged_step(wd, DECISION_INTERRUPT + 1, lm, ce)


def test_bayes_rule_of_a_decision_trained_run(decision):
    """Decision-trained class models score texts alike (margins of a few nats), so here the
    3:1 prior decides texts: a flipped prior changes predictions."""
    check_bayes_rule(decision)


def test_decision_resume_after_ctrl_c_equals_the_uninterrupted_run(decision, decision_resumed):
    """Ctrl-C at step 2 of 4 (mid epoch), then the same command."""
    assert [r["step"] for r in records(decision, "train")] == [1, 2, 3, 4]
    assert_same_run(decision, decision_resumed[0])


def test_a_changed_training_file_under_the_same_name_is_refused(data, pretrained):
    """Train again in a workdir whose training file now holds other texts: refused in one line
    naming the file, the workdir untouched."""
    wd, args = pretrained
    train = data["pretrain"]["train"]
    before = hashlib.sha256(train.read_bytes()).hexdigest()
    lines = train.read_text().splitlines()
    train.write_text("\n".join(lines[1:] + lines[:1]) + "\n")  # the same texts, another order
    files = snapshot(wd)
    p = run(*args, "--config.train.epochs=2", config="pretrain_unsup.py", check=False)
    assert p.returncode == 1
    after = hashlib.sha256(train.read_bytes()).hexdigest()
    assert last_line(p) == (
        f"error: data changed since the run in {wd} read it: {train.resolve()} (sha256 "
        f"{before[:12]} -> {after[:12]}); a run is continued and evaluated only on the data it "
        "was trained with: give new data a new file name (to train on it: another --workdir; a "
        "new test set: --config.data.test_path=FILE)"
    )
    assert snapshot(wd) == files


# --- the discriminative baseline ----------------------------------------------------------


@pytest.fixture(scope="module")
def discriminative(data, tmp_path_factory):
    wd = tmp_path_factory.mktemp("discriminative") / "run"
    run(
        f"--workdir={wd}",
        *COMMON,
        *data_args(data["disc"]),
        "--config.model.size=tiny",
        "--config.model.init=scratch",
        "--config.model.dtype=float32",
        "--config.train.min_steps=0",
        "--config.train.epochs=1",
        "--config.train.lr=3e-3",
        "--config.train.warmup_steps=1",
        # the n-gram expert off: its term is not in the predictions file these tests read
        # (it has its own: test_ngram.py); on, cross-entropy chooses it for this 4-step head
        "--config.eval.ngram_weights=(0.0,)",
        config="discriminative.py",
    )
    return wd


def test_discriminative_baseline_end_to_end(discriminative):
    """Its scores are the head's log posteriors (no prior), every reported figure follows from
    the predictions file, and the head was trained (not the uniform start)."""
    m = metrics(discriminative)
    assert json.loads((discriminative / "run_info.json").read_text())["conditioning"] == (
        "discriminative"
    )
    assert m["prior"] == [0.0, 0.0] and m["steps"] == 4
    rows = predictions(discriminative)
    logp = np.array([r["log_likelihoods"] for r in rows])
    labels = np.array([r["label"] for r in rows])
    np.testing.assert_allclose(np.exp(logp).sum(1), 1.0, rtol=1e-5)
    assert np.abs(logp - np.log(0.5)).max() > 1e-3
    pred = logp.argmax(1)
    assert [r["prediction"] for r in rows] == pred.tolist()
    assert set(m["results"]["test"]) == {"bayes", "calibrated"}  # no per-token rule
    bayes = m["results"]["test"]["bayes"]
    assert bayes["accuracy"] == pytest.approx(np.mean(pred == labels)) == m["accuracy"]
    assert bayes["confusion"] == [
        [int(np.sum((labels == t) & (pred == p))) for p in range(2)] for t in range(2)
    ]
    (train,) = records(discriminative, "train")[-1:]
    assert train["lm_loss"] == 0.0 and train["decision_loss"] == pytest.approx(train["train_loss"])
    assert (discriminative / "export" / "head.npz").exists()
    # issue 26: a head has no p(text), so no OOD score; its posteriors are calibrated the same way
    assert m["ood"] is None and all("ood_score" not in r for r in rows)
    assert set(m["calibration"]["temperatures"]) | set(
        m["calibration"]["temperature_at_bound"]
    ) == {
        "bayes",
        "calibrated",
    }
    post = np.exp(logp / (m["calibration"]["temperature"] or 1.0))  # softmax(logits / T)
    post /= post.sum(1, keepdims=True)
    np.testing.assert_allclose([r["confidence"] for r in rows], post.max(1), rtol=1e-6)
    assert "A classification head has no p(text)" in (discriminative / "report.md").read_text()


def test_eval_with_a_changed_test_file_under_the_same_name_is_refused(data, discriminative):
    """Eval rewrites the run's report: on other texts under the test file's name it would pass
    them off as the run's test set (and pair them with its earlier predictions in report mode),
    so it is refused; another test set goes by another name (eval_<name>/)."""
    test = data["disc"]["test"]
    before = hashlib.sha256(test.read_bytes()).hexdigest()
    test.write_text("".join(test.read_text().splitlines(keepends=True)[:-1]))  # one text fewer
    files = snapshot(discriminative)
    p = run("--mode=eval", f"--workdir={discriminative}", config=None, check=False)
    after = hashlib.sha256(test.read_bytes()).hexdigest()
    assert p.returncode == 1
    assert last_line(p).startswith(
        f"error: data changed since the run in {discriminative} read it: {test.resolve()} "
        f"(sha256 {before[:12]} -> {after[:12]}); "
    )
    assert snapshot(discriminative) == files
