"""run.py end to end on configs/tiny.py and a small subset of the real IMDB files:
train (interrupted, then resumed), eval, generate, report, and the one-line errors."""

import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from conftest import IMDB_DIR, REPO, TOKENIZER_DIR

pytestmark = pytest.mark.skipif(not (IMDB_DIR / "train.jsonl.gz").exists() or not TOKENIZER_DIR.exists(),
                                reason="needs ../shared/data")

# Every run.py call here shares one compilation cache: later calls (the resume, eval mode) run
# programs compiled by earlier ones, and their figures must still match.
CACHE = Path(tempfile.mkdtemp(prefix="gencls_xla_cache_"))
SMALL = ["--config.compile_cache_dir=" + str(CACHE), "--config.compile_cache_min_secs=0",
         "--config.data.per_class_limit=24", "--config.data.val_size=16", "--config.eval.test_per_class=16",
         "--config.eval.sample_per_class=8", "--config.data.tokenizer=" + str(TOKENIZER_DIR),
         "--config.data.train_path=" + str(IMDB_DIR / "train.jsonl.gz"),
         "--config.data.test_path=" + str(IMDB_DIR / "test.jsonl.gz")]


def run(*args, check=True):
    cmd = [sys.executable, str(REPO / "run.py"), "--config=" + str(REPO / "configs" / "tiny.py"), *args]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed:\n{p.stderr[-3000:]}")
    return p


def recomputed_accuracy(pred_path, prior):
    rows = [json.loads(line) for line in open(pred_path)]
    ll = np.array([r["log_likelihoods"] for r in rows])
    labels = np.array([r["label"] for r in rows])
    return float(np.mean((ll + np.asarray(prior)).argmax(1) == labels)), len(rows)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    wd = tmp_path_factory.mktemp("runs") / "tiny"
    # Interrupted after 2 steps (a checkpoint is written), then resumed to the end.
    run(f"--workdir={wd}", "--config.train.max_steps=2", *SMALL)
    meta_steps = sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit())
    assert meta_steps == [2]
    run(f"--workdir={wd}", *SMALL)
    return wd


def test_train_resume_writes_everything(workdir):
    for name in ("config.json", "run_info.json", "metrics.jsonl", "metrics.json", "report.md", "curves.png",
                 "predictions_val.jsonl", "predictions_test.jsonl", "confusion_test.png", "export/neg/model.safetensors",
                 "export/pos/config.json"):
        assert (workdir / name).exists(), name
    steps = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    m = json.loads((workdir / "metrics.json").read_text())
    assert m["stop_reason"] == "completed" and m["steps"] == 3  # 24 texts/class, packed into 128-token rows: 3 steps
    assert any(r.get("kind") == "eval" or "val_loss" in json.dumps(r) for r in steps)
    acc, n = recomputed_accuracy(workdir / "predictions_test.jsonl", m["prior"])
    assert n == 32
    assert math.isclose(acc, m["accuracy"]) and math.isclose(acc, m["results"]["test"]["bayes"]["accuracy"])
    report = (workdir / "report.md").read_text()
    assert f"{100 * acc:.2f}%" in report and "| calibrated |" in report
    assert any(CACHE.iterdir()), "no compiled program was stored in config.compile_cache_dir"
    gap = 100 * (m["results"]["train_sample"]["bayes"]["accuracy"] - m["results"]["val"]["bayes"]["accuracy"])
    assert m["results"]["train_sample"]["bayes"]["n"] == 32  # 16 per class
    assert f"Train (sample) - validation accuracy gap (bayes): {gap:+.2f} points" in report


def test_eval_mode_reproduces_the_training_run_figures(workdir):
    before = json.loads((workdir / "metrics.json").read_text())
    run("--mode=eval", f"--workdir={workdir}", *SMALL)
    after = json.loads((workdir / "metrics.json").read_text())
    assert math.isclose(after["accuracy"], before["accuracy"])
    np.testing.assert_allclose(after["results"]["val"]["bayes"]["confusion"], before["results"]["val"]["bayes"]["confusion"])


def test_generate_and_round_trip_into_training_data(workdir):
    run("--mode=generate", f"--workdir={workdir}", *SMALL, "--config.generate.per_class=4", "--config.generate.max_new_tokens=16")
    rows = [json.loads(line) for line in open(workdir / "synthetic.jsonl")]
    assert rows and {r["label"] for r in rows} <= {"neg", "pos"}
    assert all(r["origin"] == "synthetic" and "margin" in r and r["sampling"]["top_p"] == 0.95 for r in rows)
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
    p = run("--mode=report", f"--workdirs={workdir},{workdir.parent / 'never_ran'}")
    m = json.loads((workdir / "metrics.json").read_text())
    assert f"| tiny | 24 per class | 1 | 24/24 | {100 * m['accuracy']:.2f}% |" in p.stdout
    assert "| never_ran |" in p.stdout and "no run" in p.stdout


def test_programmatic_classifier(workdir):
    from gencls_jax.classifier import GenerativeClassifier

    clf = GenerativeClassifier.load(workdir)
    texts = ["A wonderful film.", "Dreadful, boring and far too long."]
    ll = clf.log_likelihoods(texts)
    assert ll.shape == (2, 2) and np.all(ll < 0)
    assert clf.predict(texts) == [clf.label_names[i] for i in (ll + clf.log_prior).argmax(1)]
    tokens = clf.tokenizer.encode_batch(texts[:1])[0] + [clf.tokenizer.eos_id]
    import jax

    direct = jax.jit(clf.scorer)(clf.params, np.array([tokens], np.int32), np.ones((1, len(tokens)), np.int32))
    np.testing.assert_allclose(np.asarray(direct)[0], ll[0], rtol=1e-5)


def test_workdir_of_another_model_size_is_refused(workdir):
    p = run(f"--workdir={workdir}", *SMALL, "--config.model.size=gpt2", check=False)
    assert p.returncode != 0
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "n_positions=256, this config builds n_positions=1024" in last and "another --workdir" in last


def test_bad_input_is_one_line(tmp_path):
    p = run(f"--workdir={tmp_path / 'x'}", "--config.train.epochz=3", check=False)
    assert p.returncode != 0 and "epochz" in p.stderr
    p = run("--mode=eval", f"--workdir={tmp_path / 'empty'}", *SMALL, check=False)
    assert p.returncode != 0
    assert "no run_info.json: no run was trained there (run --mode=train first)" in p.stderr.strip().splitlines()[-1]
