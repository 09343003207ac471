"""run.py end to end on configs/tiny.py and a small subset of the real IMDB files:
train (interrupted, then resumed), eval, generate, report, and the one-line errors; a workdir
holds its run to its own config and data."""

import hashlib
import json
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import IMDB_DIR, REPO, TOKENIZER_DIR, XLA_ARGS, damage_checkpoint, in_parallel

pytestmark = pytest.mark.skipif(
    not (IMDB_DIR / "train.jsonl.gz").exists() or not TOKENIZER_DIR.exists(),
    reason="needs ../shared/data",
)

# Every run.py call on the IMDB run shares one compilation cache: later calls (the resume, eval
# mode) run programs compiled by earlier ones, and their figures must still match.
CACHE = Path(tempfile.mkdtemp(prefix="gencls_xla_cache_"))
SMALL = [
    "--config.compile_cache_dir=" + str(CACHE),
    "--config.compile_cache_min_secs=0",
    "--config.data.per_class_limit=32",
    "--config.data.val_size=16",
    "--config.eval.test_per_class=16",
    "--config.eval.sample_per_class=8",
    "--config.data.tokenizer=" + str(TOKENIZER_DIR),
    "--config.train.log_every=1",
    "--config.data.train_path=" + str(IMDB_DIR / "train.jsonl.gz"),
    "--config.data.test_path=" + str(IMDB_DIR / "test.jsonl.gz"),
]


def run(*args, check=True, config="tiny.py"):
    """run.py with configs/<config> (None: no --config, eval/generate read the run's own)."""
    cmd = [
        sys.executable,
        str(REPO / "run.py"),
        *(["--config=" + str(REPO / "configs" / config)] if config else []),
        *args,
    ]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed:\n{p.stderr[-3000:]}")
    return p


def last_line(p) -> str:
    return p.stderr.strip().splitlines()[-1]


def snapshot(folder: Path) -> dict:
    """sha256 of every file under `folder`: a refused command must leave all of them as they
    were."""
    return {
        str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


def recomputed_accuracy(pred_path, prior):
    rows = [json.loads(line) for line in open(pred_path)]
    ll = np.array([r["log_likelihoods"] for r in rows])
    labels = np.array([r["label"] for r in rows])
    return float(np.mean((ll + np.asarray(prior)).argmax(1) == labels)), len(rows)


def _interrupted_and_resumed(wd: Path) -> Path:
    """Interrupted after 2 steps (a checkpoint is written), then resumed to the end."""
    run(f"--workdir={wd}", "--config.train.max_steps=2", *SMALL)
    meta_steps = sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit())
    assert meta_steps == [2]
    run(f"--workdir={wd}", *SMALL)
    return wd


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The tiny IMDB run (`workdir`) and the 4-class run (`topic_run`), trained at the same time
    (a tiny run keeps about one core busy)."""
    wd, topics = tmp_path_factory.mktemp("runs") / "tiny", tmp_path_factory.mktemp("topics")
    return in_parallel(lambda: _interrupted_and_resumed(wd), lambda: _topic_run(topics))


@pytest.fixture(scope="module")
def workdir(runs):
    return runs[0]


def test_train_resume_writes_everything(workdir):
    for name in (
        "config.json",
        "run_info.json",
        "metrics.jsonl",
        "metrics.json",
        "report.md",
        "curves.png",
        "predictions_val.jsonl",
        "predictions_test.jsonl",
        "confusion_test.png",
        "export/neg/model.safetensors",
        "export/pos/config.json",
        "history.jsonl",
        "train_summary.json",
    ):
        assert (workdir / name).exists(), name
    steps = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    m = json.loads((workdir / "metrics.json").read_text())
    # 24 texts/class, packed into 128-token rows: 3 steps
    assert m["stop_reason"] == "completed" and m["steps"] == 3
    assert any(r.get("kind") == "eval" or "val_loss" in json.dumps(r) for r in steps)
    acc, n = recomputed_accuracy(workdir / "predictions_test.jsonl", m["prior"])
    assert n == 32
    assert math.isclose(acc, m["accuracy"]) and math.isclose(
        acc, m["results"]["test"]["bayes"]["accuracy"]
    )
    report = (workdir / "report.md").read_text()
    assert f"{100 * acc:.2f}%" in report and "| calibrated |" in report
    assert any(CACHE.iterdir()), "no compiled program was stored in config.compile_cache_dir"
    gap = 100 * (
        m["results"]["train_sample"]["bayes"]["accuracy"] - m["results"]["val"]["bayes"]["accuracy"]
    )
    assert m["results"]["train_sample"]["bayes"]["n"] == 32  # 16 per class
    assert f"Train (sample) - validation accuracy gap (bayes): {gap:+.2f} points" in report
    # Confusion matrices as markdown too: rows of the true class sum to its support.
    conf = m["results"]["test"]["bayes"]["confusion"]
    assert f"| neg | {conf[0][0]} | {conf[0][1]} |" in report and sum(conf[0]) == 16
    # Per-class precision and recall, recomputed from the predictions file.
    rows = [json.loads(line) for line in open(workdir / "predictions_test.jsonl")]
    ll = np.array([r["log_likelihoods"] for r in rows]) + np.asarray(m["prior"])
    pred, labels = ll.argmax(1), np.array([r["label"] for r in rows])
    for c, name in enumerate(("neg", "pos")):
        tp = int(np.sum((pred == c) & (labels == c)))
        precision = tp / max(int(np.sum(pred == c)), 1)
        recall = tp / int(np.sum(labels == c))
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        row = f"| {name} | {precision:.4f} | {recall:.4f} | {f1:.4f} | {int(np.sum(labels == c))} |"
        assert row in report, row


def test_resumed_run_summary_covers_both_calls_and_history_records_them(workdir):
    """The summary of a run interrupted after 2 steps and resumed covers all 3 steps and both
    calls."""
    m = json.loads((workdir / "metrics.json").read_text())
    per_step = [
        r["train_loss"]
        for r in json.loads("[" + ",".join(open(workdir / "metrics.jsonl")) + "]")
        if r["kind"] == "train"
    ]  # log_every=1: one record per step
    assert len(per_step) == 3
    assert math.isclose(m["final_train_loss"], float(np.mean(per_step)), rel_tol=1e-9)
    assert m["train_calls"] == 2 and m["train_wall_s"] > 0
    history = [json.loads(line) for line in open(workdir / "history.jsonl")]
    trains = [h for h in history if h["mode"] == "train"]
    assert len(trains) == 2 and trains[1]["changed"] == {"train.max_steps": [2, 0]}
    assert all(h["git_revision"] for h in history)


def test_metrics_carry_provenance_and_the_scored_step_is_the_best(workdir):
    m = json.loads((workdir / "metrics.json").read_text())
    assert m["evaluated_step"] == m["best_step"] == 3
    prov = m["provenance"]
    assert prov["git_revision"] and prov["git_revision"] != "unknown"
    (test_src,) = prov["data"]["test"]
    assert test_src["path"] == str((IMDB_DIR / "test.jsonl.gz").resolve())
    assert (
        test_src["sha256"] == hashlib.sha256((IMDB_DIR / "test.jsonl.gz").read_bytes()).hexdigest()
    )
    assert (
        prov["data"]["val"][0]["sha256"]
        == hashlib.sha256((IMDB_DIR / "train.jsonl.gz").read_bytes()).hexdigest()
    )


def test_eval_mode_reproduces_the_training_run_figures(workdir):
    before = json.loads((workdir / "metrics.json").read_text())
    # the run's own config, no --config needed
    run("--mode=eval", f"--workdir={workdir}", config=None)
    after = json.loads((workdir / "metrics.json").read_text())
    assert math.isclose(after["accuracy"], before["accuracy"])
    np.testing.assert_allclose(
        after["results"]["val"]["bayes"]["confusion"],
        before["results"]["val"]["bayes"]["confusion"],
    )
    for key in (
        "stop_reason",
        "steps",
        "final_train_loss",
        "train_wall_s",
        "best_step",
        "evaluated_step",
    ):
        assert after[key] == before[key], key
    # what eval fits on validation (issue 26) is fitted again the same: temperature, threshold
    for part, key in (
        ("calibration", "temperatures"),
        ("calibration", "ece"),
        ("ood", "threshold"),
    ):
        assert after[part][key] == pytest.approx(before[part][key], rel=1e-9), (part, key)


def test_finished_workdir_with_other_data_or_settings_is_refused_untouched(workdir):
    files = snapshot(workdir)
    p = run(
        f"--workdir={workdir}",
        *SMALL,
        "--config.data.per_class_limit=12",
        "--config.train.lr=0.01",
        check=False,
    )
    assert p.returncode != 0
    line = last_line(p)
    assert (
        line.startswith("error: ")
        and "data.per_class_limit (32 -> 12)" in line
        and "train.lr (0.001 -> 0.01)" in line
    )
    assert snapshot(workdir) == files


def test_generate_and_round_trip_into_training_data(workdir):
    run(
        "--mode=generate",
        f"--workdir={workdir}",
        *SMALL,
        "--config.generate.per_class=4",
        "--config.generate.max_new_tokens=16",
    )
    rows = [json.loads(line) for line in open(workdir / "synthetic.jsonl")]
    assert rows and {r["label"] for r in rows} <= {"neg", "pos"}
    assert all(
        r["origin"] == "synthetic" and "margin" in r and r["sampling"]["top_p"] == 0.95
        for r in rows
    )
    stats = json.loads((workdir / "synthetic_stats.json").read_text())
    assert stats["generated"] == 8 and stats["kept"] == len(rows)

    import ml_collections  # noqa: F401

    from configs import tiny
    from gencls_jax.data.pipeline import load_datasets

    c = tiny.get_config()
    c.data.per_class_limit, c.data.val_size = 24, 16
    c.data.extra_train_path = str(workdir / "synthetic.jsonl")
    ds = load_datasets(c, splits=("train",))
    assert int((ds["train"].origin == "synthetic").sum()) == len(rows)


def test_report_mode_prints_history_table(workdir):
    p = run("--mode=report", f"--workdirs={workdir}")
    m = json.loads((workdir / "metrics.json").read_text())
    assert f"| tiny | 32 per class | 1 | 24/24 | {100 * m['accuracy']:.2f}% |" in p.stdout
    p = run("--mode=report", f"--workdirs={workdir},{workdir.parent / 'never_ran'}", check=False)
    assert (
        p.returncode != 0
        and last_line(p) == f"error: --workdirs: no such folder: {workdir.parent / 'never_ran'}"
    )


def test_programmatic_classifier(workdir):
    from gencls_jax.classifier import GenerativeClassifier

    clf = GenerativeClassifier.load(workdir)
    texts = ["A wonderful film.", "Dreadful, boring and far too long."]
    ll = clf.log_likelihoods(texts)
    assert ll.shape == (2, 2) and np.all(ll < 0)
    assert clf.predict(texts) == [clf.label_names[i] for i in (ll + clf.log_prior).argmax(1)]
    import jax

    tokens, mask = clf.encode(texts)
    direct = jax.jit(clf.scorer)(clf.params, tokens, mask)
    np.testing.assert_allclose(np.asarray(direct), ll, rtol=1e-5)


def test_damaged_checkpoints_are_in_the_summary_and_all_damaged_is_one_line(workdir, tmp_path):
    """On a copy of the run (checkpoints 2 and 3, the best): an eval and a resumed training that
    skip a damaged checkpoint say so in their end-of-run summary; training with every checkpoint
    damaged is one line and exit 1."""
    wd = tmp_path / "copy"
    shutil.copytree(workdir, wd)
    ckpts = wd / "checkpoints"
    assert sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit()) == [2, 3]
    quick = ["--config.eval.train_sample_per_class=0"]  # an evaluation setting: allowed
    damage_checkpoint(ckpts / "3")
    p = run("--mode=eval", f"--workdir={wd}", *quick, config=None)
    assert (
        f"warning: checkpoint step 2 was used instead of the damaged step 3 (kept at {ckpts / '3'})"
        in p.stdout.splitlines()
    )
    p = run(f"--workdir={wd}", *SMALL, *quick)  # resumes at step 2 and trains step 3 again
    moved = wd / "checkpoints_damaged" / "3"
    assert (
        f"warning: checkpoint step 2 was used instead of the damaged step 3 (kept at {moved})"
        in p.stdout.splitlines()
    )
    assert json.loads((wd / "metrics.json").read_text())["steps"] == 3

    for step in (2, 3):
        damage_checkpoint(ckpts / str(step))
    p = run(f"--workdir={wd}", *SMALL, *quick, check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert last_line(p).startswith(f"error: {ckpts}: no checkpoint restores; tried step 3 (")
    assert last_line(p).endswith(
        f"they are kept in {ckpts}_damaged, and the same command again trains this run from step 0"
    )


def test_workdir_of_another_model_size_is_refused(workdir):
    p = run(f"--workdir={workdir}", *SMALL, "--config.model.size=gpt2", check=False)
    assert p.returncode != 0
    line = last_line(p)
    assert (
        line.startswith("error: ")
        and "model.size ('tiny' -> 'gpt2')" in line
        and "another --workdir" in line
    )


def test_interrupted_run_exits_130(tmp_path):
    """Ctrl-C saves and exits non-zero, so `run.py ... && next` does not go on."""
    wd = tmp_path / "sigint"
    cmd = [
        sys.executable,
        str(REPO / "run.py"),
        "--config=" + str(REPO / "configs" / "tiny.py"),
        f"--workdir={wd}",
        *SMALL,
        "--config.data.per_class_limit=64",
        "--config.train.epochs=3",
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 300
    while not (wd / "checkpoints").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]


def test_bad_input_is_one_line(tmp_path):
    p = run(f"--workdir={tmp_path / 'x'}", "--config.train.epochz=3", check=False)
    assert p.returncode != 0 and "epochz" in p.stderr
    p = run("--mode=eval", f"--workdir={tmp_path / 'empty'}", *SMALL, check=False)
    assert p.returncode != 0
    assert "no config.json: no run was trained there (run --mode=train first)" in last_line(p)
    p = run("--mode=eval", f"--workdir={tmp_path / 'empty'}", config=None, check=False)
    assert p.returncode != 0 and "no config.json: no run was trained there" in last_line(p)


# --- a 4-class run: eval must score its own data, not what the command line's config names ------

TOPICS = {
    "sports": "team match goal season coach player league score win final",
    "science": "atom cell energy theory experiment lab physics gene data orbit",
    "music": "song album guitar band concert melody singer drum chorus tour",
    "food": "recipe bake flavor kitchen garlic sauce bread spice dinner oven",
}


def _topic_file(path: Path, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for label, words in TOPICS.items():
            for i in range(per_class):
                text = " ".join(rng.choice(words.split(), size=12))
                f.write(json.dumps({"id": f"{label}-{i}", "label": label, "text": text}) + "\n")
    return path


def _topic_run(d: Path) -> Path:
    train, test = _topic_file(d / "train.jsonl", 20, 0), _topic_file(d / "test.jsonl", 6, 1)
    wd = d / "run"
    run(
        f"--workdir={wd}",
        *XLA_ARGS,  # the session's: CACHE holds the IMDB run's only
        "--config.data.tokenizer=" + str(TOKENIZER_DIR),
        "--config.data.source=jsonl",
        f"--config.data.train_path={train}",
        f"--config.data.test_path={test}",
        "--config.data.label_names=()",
        "--config.data.per_class_limit=0",
        "--config.data.val_size=8",
        "--config.eval.test_per_class=0",
        "--config.eval.sample_per_class=0",
        "--config.eval.train_sample_per_class=0",
        "--config.train.epochs=2",
    )
    return wd


@pytest.fixture(scope="module")
def topic_run(runs):
    return runs[1]


def test_eval_of_a_four_class_run_uses_its_own_data(topic_run):
    before = json.loads((topic_run / "metrics.json").read_text())
    assert json.loads((topic_run / "run_info.json").read_text())["label_names"] == sorted(TOPICS)
    run("--mode=eval", f"--workdir={topic_run}", config=None)
    after = json.loads((topic_run / "metrics.json").read_text())
    assert after["results"]["test"]["bayes"]["n"] == 24
    assert math.isclose(after["accuracy"], before["accuracy"])


def test_eval_with_another_runs_data_is_refused_untouched(topic_run):
    files = snapshot(topic_run)
    # The README's IMDB eval command, pointed at the 4-class run.
    p = run("--mode=eval", f"--workdir={topic_run}", *SMALL, check=False)
    assert (
        p.returncode != 0
        and "data.train_path" in last_line(p)
        and "leave out --config" in last_line(p)
    )
    # An explicit other test set whose labels (IMDB's 0/1) are not this run's classes.
    p = run(
        "--mode=eval",
        f"--workdir={topic_run}",
        "--config.data.test_path=" + str(IMDB_DIR / "test.jsonl.gz"),
        config=None,
        check=False,
    )
    assert p.returncode != 0 and last_line(p).startswith("error: ") and "integer" in last_line(p)
    assert snapshot(topic_run) == files


def test_eval_on_another_test_set_with_the_runs_labels_writes_beside_the_report(
    topic_run, tmp_path
):
    other = _topic_file(tmp_path / "other_test.jsonl", 3, 7)
    files = snapshot(topic_run)
    run("--mode=eval", f"--workdir={topic_run}", f"--config.data.test_path={other}", config=None)
    folder = f"eval_other_test-{hashlib.sha256(other.read_bytes()).hexdigest()[:8]}"
    out = json.loads((topic_run / folder / "metrics.json").read_text())
    assert out["results"]["test"]["bayes"]["n"] == 12
    assert out["provenance"]["data"]["test"][0]["path"] == str(other.resolve())
    changed = {k: v for k, v in snapshot(topic_run).items() if files.get(k) != v}
    assert set(changed) == {"history.jsonl"} | {k for k in changed if k.startswith(f"{folder}/")}


def test_two_test_files_of_one_name_get_two_folders_and_the_printed_path(topic_run, tmp_path):
    """Two different test files both named test.jsonl: two eval folders (before: the second
    overwrote the first's `eval_test/`), and the `report:` line names the report written (before:
    the run's own report.md, which eval left alone)."""
    reports = []
    for seed in (8, 9):
        (tmp_path / str(seed)).mkdir()
        test = _topic_file(tmp_path / str(seed) / "test.jsonl", 2, seed)
        p = run(
            "--mode=eval", f"--workdir={topic_run}", f"--config.data.test_path={test}", config=None
        )
        (line,) = [ln for ln in p.stdout.splitlines() if ln.startswith("report: ")]
        reports.append(Path(line.removeprefix("report: ")))
        digest = hashlib.sha256(test.read_bytes()).hexdigest()
        assert reports[-1] == topic_run / f"eval_test-{digest[:8]}" / "report.md"
        out = json.loads((reports[-1].parent / "metrics.json").read_text())
        assert out["provenance"]["data"]["test"][0]["sha256"] == digest
    assert reports[0] != reports[1] and all(r.exists() for r in reports)
    assert not [p.name for p in topic_run.iterdir() if p.name.startswith(".")]  # no temp, no lock
