"""--mode=add_class (issue 26, item 4) on tiny per_class runs of three made-up topics: a run W of
two topics plus a third, food, from a file of its texts, as a new run W2. W is left byte for
byte; W2's old class models are W's; its new one is what a run of all three classes trained
together makes of food (the reference: a joint run on the same texts, dropout off, nothing that
couples the classes); an interrupted add_class resumes exactly; the refusals are one line."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import REPO, TOKENIZER_DIR, XLA_CACHE

from gencls_jax.classifier import GenerativeClassifier
from gencls_jax.commands import add_class as A
from gencls_jax.commands import predict as P
from gencls_jax.commands.train import initial_model, train_and_evaluate
from gencls_jax.data.inputs import Inputs
from gencls_jax.errors import DataError, RunError
from gencls_jax.runs import load, rules
from gencls_jax.runs.lock import WorkdirLock
from gencls_jax.scoring import calibration, decide, ood
from gencls_jax.training import loop

pytestmark = pytest.mark.skipif(not TOKENIZER_DIR.exists(), reason="needs ../shared/data")

TOPICS = {
    "sports": "team match goal season coach player league score win final",
    "science": "atom cell energy theory experiment lab physics gene data orbit",
    "food": "recipe bake flavor kitchen garlic sauce bread spice dinner oven",
}
# One text per row, 8 rows a step: the run's classes take 5 steps an epoch, food (23 training
# texts, 1 held out) 3, and train.min_steps=8 makes the run of all three take 2 epochs (food
# trained alone on its 3 steps an epoch would take 3).
N_OLD, N_FOOD, N_VAL = 40, 24, 1


def topic_rows(labels, n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "id": f"{label}-{seed}-{i}",
            "label": label,
            "text": " ".join(rng.choice(TOPICS[label].split(), size=12)),
        }
        for label in labels
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_config(folder: Path, train: Path, val: Path, test: Path, **data):
    """configs/tiny.py on local topic files, one text per row, no report samples, GPT-2's whole
    vocabulary. Dropout off and the latest checkpoint as the best: what the class models of a
    joint run share (dropout keys by step, the best epoch by the run's validation, a compact
    vocabulary counted over every class's texts) left out, they equal the ones trained apart,
    to float rounding."""
    sys.path.insert(0, str(REPO))
    from configs import tiny

    c = tiny.get_config()
    c.data.update(
        {
            "tokenizer": str(TOKENIZER_DIR),
            "train_path": str(train),
            "val_path": str(val),
            "test_path": str(test),
            "label_names": (),
            "per_class_limit": 0,
            "batching": "bucket",
            "bucket_lengths": (32, 128),  # a text and its EOS fit 32 tokens
            "cache_dir": str(folder / "tok"),
            "compact_vocab": 0,
            **data,
        }
    )
    c.model.dropout = 0.0
    c.eval.update(dict(test_per_class=0, sample_per_class=0, train_sample_per_class=0))
    c.train.update(dict(tensorboard=False, plot=False, min_steps=8, best_metric=""))
    c.progress_bars = False
    c.compile_cache_dir = str(XLA_CACHE)  # the session's
    c.compile_cache_min_secs = 0.0
    return c


def snapshot(folder: Path) -> dict:
    return {
        str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


def food_inputs(n: int = N_FOOD, source: str = "food.txt", seed: int = 5) -> Inputs:
    """Food texts as --input gives them (seed 5: the new class's; another: unseen ones)."""
    rows = topic_rows(["food"], n, seed)
    where = [f"{source}:{i + 1}" for i in range(n)]
    return Inputs([r["text"] for r in rows], [r["id"] for r in rows], where, [], source)


def own_config(workdir: Path):
    return rules.eval_config(workdir, None)[0]


def interrupt_after_first_step(monkeypatch):
    """A SIGINT (as Ctrl-C sends) while the new class trains: its first step's record comes
    during the second step, after which the loop saves and returns."""

    def kill(step, record):
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)

    train = loop.train
    monkeypatch.setattr(A.loop, "train", lambda *a, **kw: train(*a, **kw, callbacks=[kill]))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """W (sports, science), W2 = W + food (interrupted after two steps, then resumed), and J:
    all three trained together on the same texts."""
    d = tmp_path_factory.mktemp("add_class")
    base = ["science", "sports"]
    train = write_jsonl(d / "train.jsonl", topic_rows(base, N_OLD, 0))
    val = write_jsonl(d / "val.jsonl", topic_rows(base, 4, 1))
    test = write_jsonl(d / "test.jsonl", topic_rows(base, 6, 2))
    w, w2 = d / "W", d / "W2"
    train_and_evaluate(tiny_config(d, train, val, test), w)
    before = snapshot(w)
    mp = pytest.MonkeyPatch()
    interrupt_after_first_step(mp)
    out = A.add_class(own_config(w), w, w2, "food", food_inputs)
    mp.undo()
    assert out["stop_reason"] == "interrupted" and not (w2 / "run_info.json").exists()
    A.add_class(own_config(w), w, w2, "food", food_inputs)  # the same command resumes it
    history = (w2 / "history.jsonl").read_text().splitlines()
    # J: the same texts, all three classes in one run (food third, as add_class put it)
    added = w2 / "added" / "class2"
    j_train = write_jsonl(
        d / "j_train.jsonl",
        [
            *map(json.loads, train.read_text().splitlines()),
            *map(json.loads, (added / "train.jsonl").read_text().splitlines()),
        ],
    )
    j_val = write_jsonl(
        d / "j_val.jsonl",
        [
            *map(json.loads, val.read_text().splitlines()),
            *map(json.loads, (added / "val.jsonl").read_text().splitlines()),
        ],
    )
    j = d / "J"
    j_config = tiny_config(d, j_train, j_val, test, label_names=(*base, "food"))
    j_config.eval.splits = ()  # its models are compared, not its accuracy
    train_and_evaluate(j_config, j)
    return dict(folder=d, w=w, w2=w2, j=j, before=before, history=history, test=test)


def loaded(workdir: Path) -> load.LoadedRun:
    run = load.load_run(own_config(workdir), workdir)
    return run._replace(params=jax.tree_util.tree_map(np.asarray, run.params))


def test_w_is_left_byte_for_byte_and_the_history_is_w2s(runs):
    assert snapshot(runs["w"]) == runs["before"]
    assert [json.loads(line)["mode"] for line in runs["history"]] == ["add_class"]
    assert not (runs["w2"] / "add_class" / "checkpoints").exists()  # W2's checkpoint has it


def test_old_class_models_and_log_likelihoods_are_ws(runs):
    old, new = loaded(runs["w"]).params, loaded(runs["w2"]).params
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a, b[:2]), old, new)
    texts = [json.loads(line)["text"] for line in runs["test"].read_text().splitlines()]
    texts += food_inputs(6, seed=9).texts
    ll_w = GenerativeClassifier.load(runs["w"]).log_likelihoods(texts)
    ll_w2 = GenerativeClassifier.load(runs["w2"]).log_likelihoods(texts)
    assert ll_w.shape == (len(texts), 2) and ll_w2.shape == (len(texts), 3)
    np.testing.assert_allclose(ll_w2[:, :2], ll_w, rtol=1e-6)


def test_every_class_model_is_the_one_trained_together(runs):
    """The new model (trained apart, interrupted and resumed) and the old ones equal the joint
    run's three, to float32 rounding (stacking 3 models or 1 may round differently)."""
    run = loaded(runs["w2"])
    w2, j = run.params, loaded(runs["j"]).params
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), w2, j
    )
    _, init = initial_model(own_config(runs["w2"]), run.tokenizer)
    moved = jax.tree_util.tree_map(lambda a, b: float(np.abs(a[2] - b).max()), w2, init)
    assert min(jax.tree_util.tree_leaves(moved)) > 1e-4  # every tensor of it was trained


def test_w2_is_a_run_of_three_classes_with_the_new_prior(runs, tmp_path):
    w2 = runs["w2"]
    info = json.loads((w2 / "run_info.json").read_text())
    assert info["label_names"] == ["science", "sports", "food"]
    assert info["train_class_counts"] == [N_OLD, N_OLD, N_FOOD - N_VAL]
    assert info["added_classes"][0]["val"] == N_VAL
    assert info["added_classes"][0]["training"]["steps"] == 2 * 3  # the joint run's 2 epochs
    metrics = json.loads((w2 / "metrics.json").read_text())
    counts = np.array([N_OLD, N_OLD, N_FOOD - N_VAL], float)
    np.testing.assert_allclose(metrics["prior"], np.log(counts / counts.sum()))
    assert metrics["results"]["val"]["bayes"]["n"] == 8 + N_VAL  # W's validation + food's
    assert len(metrics["offsets"]) == 3  # refit on the three classes' validation texts
    assert sorted(p.name for p in (w2 / "export").iterdir()) == ["food", "science", "sports"]
    # predict and explain read W2 as any run
    clf = GenerativeClassifier.load(w2)
    food = food_inputs(6, seed=9).texts
    assert clf.predict(food) == ["food"] * 6
    assert clf.explain(food[0]).predicted == "food"
    out = tmp_path / "labels.jsonl"
    P.run_predict(clf, food_inputs(6, seed=9), str(out))
    assert [json.loads(line)["prediction"] for line in out.read_text().splitlines()] == ["food"] * 6
    # W2's classes were trained apart: training it further is refused
    with pytest.raises(rules.ConfigMismatch, match="add_class"):
        rules.check_resume(w2, own_config(w2))


def test_validation_loss_of_the_new_class_read_from_its_scores(runs):
    """add_class's validation LM loss (W's second class model standing in for the new one) is
    read from its scores of the class's own validation texts: equal to the loss evaluator's
    pass over their training rows, as the run's own validation (`train.validation_fn`)."""
    from gencls_jax import conditioning

    config = own_config(runs["w"])
    run = loaded(runs["w"])
    tok, ds = conditioning.load_data(config, splits=("train", "val"), info=run.info)
    val, k = ds["val"], 1
    label = val.label_names[k]
    params = jax.tree_util.tree_map(lambda x: x[k : k + 1], run.params)
    old_ll = np.zeros((len(val), k))
    cond = conditioning.get("per_class")
    got = A.validation_fn(config, cond, run.model_config, val, old_ll, k, label, tok)(params)
    stream = A.class_stream(config, A.one_class(val, k, label), tok, k, config.eval.batch_size)
    own_pass = loop.make_loss_evaluator(
        config, run.model_config, lambda: stream.batches(0), stacked=True
    )(params)["val_loss"]
    assert got["val_loss"] == pytest.approx(own_pass, rel=1e-5)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_w2s_fits_are_refit_on_its_validation_texts(runs, tmp_path):
    """W2's offsets, temperature and OOD threshold are those the fit functions give on W2's
    validation texts (W's own and food's held-out one, scored by W2's three models), not W's;
    predict on W2 applies them."""
    w, w2 = runs["w"], runs["w2"]
    val = [*read_jsonl(runs["folder"] / "val.jsonl"), *read_jsonl(w2 / "added/class2/val.jsonl")]
    rows = read_jsonl(w2 / "predictions_val.jsonl")
    assert [r["id"] for r in rows] == [r["id"] for r in val]
    clf = GenerativeClassifier.load(w2)
    ll = np.array([r["log_likelihoods"] for r in rows])
    np.testing.assert_allclose(ll, clf.log_likelihoods([r["text"] for r in val]), rtol=1e-5)
    labels = np.array([r["label"] for r in rows])
    n_tok = np.array([r["n_tokens"] for r in rows])
    metrics, before = (json.loads((d / "metrics.json").read_text()) for d in (w2, w))
    prior = np.array(metrics["prior"])
    offsets = decide.fit_offsets(ll, labels)
    np.testing.assert_allclose(metrics["offsets"], offsets)
    t, at_bound = calibration.fit_temperature(decide.scores(ll, n_tok, "bayes", prior), labels)
    cal = metrics["calibration"]
    fitted = cal["temperature_at_bound"] if at_bound else cal["temperatures"]
    assert cal["fitted_on"] == "val" and fitted["bayes"] == pytest.approx(t, rel=1e-6)
    threshold = ood.keep_threshold(ood.ood_scores(ll, prior, n_tok), metrics["ood"]["keep"])
    assert metrics["ood"]["threshold"] == pytest.approx(threshold, rel=1e-6)
    assert len(before["offsets"]) == 2 and before["ood"]["threshold"] != pytest.approx(threshold)
    assert clf.ood_threshold == metrics["ood"]["threshold"]
    assert clf.temperatures == cal["temperatures"]
    out = tmp_path / "labels.jsonl"
    P.run_predict(clf, food_inputs(6, seed=9), str(out))
    lines = read_jsonl(out)
    assert {line["temperature"] for line in lines} == {cal["temperatures"].get("bayes")}
    assert all("in_distribution" in line for line in lines)


def fake_run(src: Path, dest: Path, **changes) -> Path:
    """A copy of a run's config.json and run_info.json with some values changed: what add_class
    reads before it refuses."""
    dest.mkdir()
    config = json.loads((src / "config.json").read_text())
    info = json.loads((src / "run_info.json").read_text())
    for key, value in changes.items():
        if key == "conditioning":
            info[key] = config["model"]["conditioning"] = value
        else:
            section, leaf = key.split(".")
            config[section][leaf] = value
    (dest / "config.json").write_text(json.dumps(config))
    (dest / "run_info.json").write_text(json.dumps(info))
    return dest


def test_refusals(runs, tmp_path):
    w, before = runs["w"], snapshot(runs["w"])

    def refused(exc, match, workdir=w, new=tmp_path / "new", label="food", texts=None):
        with pytest.raises(exc, match=match):
            A.add_class(own_config(workdir), workdir, new, label, lambda: texts or food_inputs())

    prefix = fake_run(w, tmp_path / "prefix", conditioning="label_prefix")
    refused(RunError, "label_prefix run, and its classes share one model", prefix)
    decision = fake_run(w, tmp_path / "decision", **{"train.objective": "decision"})
    refused(RunError, "'decision', where every class model learned from every class", decision)
    refused(DataError, "the run already has that class", label="sports")
    refused(DataError, "also the name of its export folder", label="..")
    refused(DataError, "19 texts; a new class needs at least 20", texts=food_inputs(19))
    refused(DataError, "ood_keep", fake_run(w, tmp_path / "keep", **{"eval.ood_keep": 1.5}))
    refused(RunError, "is not empty", new=runs["w2"])
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    refused(RunError, "is not empty", new=tmp_path / "used")
    refused(RunError, "inside --workdir", new=w / "sub")
    assert snapshot(w) == before and not (tmp_path / "new").exists()


def test_bad_input_on_the_command_line_is_one_line(runs, tmp_path):
    """The command line's answers: one `error:` line, exit 1, no traceback, and no W2 left (a
    new workdir that is a file was a FileExistsError traceback from the lock before)."""
    empty, few = tmp_path / "empty.txt", tmp_path / "few.txt"
    empty.write_text("")
    few.write_text("".join(t + "\n" for t in food_inputs(5).texts))
    w3 = tmp_path / "W3"
    for new, given, expected in (
        (w3, f"--input={empty}", f"error: {empty}: file is empty"),
        (w3, f"--input={few}", f"error: {few}: 5 texts; a new class needs at least 20"),
        (few, f"--input={few}", f"error: {few}: cannot make the workdir there (File exists)"),
    ):
        p = subprocess.run(
            [
                sys.executable,
                str(REPO / "run.py"),
                "--mode=add_class",
                f"--workdir={runs['w']}",
                f"--new_workdir={new}",
                "--label=food",
                given,
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )
        last = p.stderr.strip().splitlines()[-1]
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
        assert last == expected or (last.startswith("error: ") and expected in last), last
        assert not w3.exists()


def test_a_workdir_that_cannot_be_made_is_one_line(tmp_path):
    """A file where the lock would make the workdir: RunError (one line), not FileExistsError."""
    (tmp_path / "file").write_text("")
    with pytest.raises(RunError, match="cannot make the workdir there"):
        WorkdirLock(tmp_path / "file", "add_class").acquire()
