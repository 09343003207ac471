"""--mode=predict on configs/tiny.py trained by run.py on a few real IMDB reviews, against that
run's own eval output (predictions_test.jsonl of the same texts): jsonl, csv, txt and stdin in;
a file or stdout out; bad lines as one-line errors or skipped and counted; posteriors, truncation;
the `gencls` console script from another folder; --mode=explain on the same run."""

import copy
import csv
import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from conftest import IMDB_DIR, REPO, TOKENIZER_DIR, run_cli, write_jsonl

from gencls_jax.classifier import GenerativeClassifier
from gencls_jax.commands import predict as P
from gencls_jax.data import inputs as inputs_lib
from gencls_jax.data.sources import read_jsonl
from gencls_jax.errors import DataError
from gencls_jax.runs.lock import WorkdirLock
from gencls_jax.system import interrupt
from gencls_jax.system.fileio import read_jsonl as read_jsonl_lines

pytestmark = pytest.mark.skipif(
    not (IMDB_DIR / "train.jsonl.gz").exists() or not TOKENIZER_DIR.exists(),
    reason="needs ../shared/data",
)

LL_TOL = dict(rtol=1e-6, atol=1e-4)  # another batch composition may round differently
LL_APPROX = dict(rel=1e-6, abs=1e-4)  # the same, for pytest.approx


@pytest.fixture(scope="module")
def trained(tiny_run):
    """conftest's tiny run; its test file is the texts predicted below, and eval's
    predictions_test.jsonl is the reference."""
    wd, test = tiny_run["workdir"], tiny_run["test"]
    evals = [json.loads(line) for line in open(wd / "predictions_test.jsonl")]
    assert [e["id"] for e in evals] == [r["id"] for r in test]
    assert len({e["prediction"] for e in evals}) == 2, "every text got the same label"
    metrics = json.loads((wd / "metrics.json").read_text())
    prior = np.array(metrics["prior"])
    return dict(tiny_run, evals=evals, prior=prior, metrics=metrics)


@pytest.fixture(scope="module")
def clf(trained):
    return GenerativeClassifier.load(trained["workdir"])


def check_rows(rows: list[dict], trained, temperature="the run's") -> None:
    """Predict's lines against eval's lines of the same texts, in order:
    the same labels, log-likelihoods and scored tokens; posteriors of Bayes' rule with the run's
    prior at its temperature (the one metrics.json holds, unless given); eval's log p(text)
    (and a float64 reference of it), OOD score, in distribution and top posterior (issue 26);
    truncated where the text's tokens and EOS exceed the 128-token rows."""
    evals = trained["evals"]
    assert len(rows) == len(evals)
    names = ["neg", "pos"]
    if temperature == "the run's":
        temperature = trained["metrics"]["calibration"]["temperatures"].get("bayes")
    for r, e in zip(rows, evals):
        assert r["prediction"] == names[e["prediction"]]
        ll = np.array([r["log_likelihoods"][n] for n in names])
        np.testing.assert_allclose(ll, e["log_likelihoods"], **LL_TOL)
        assert r["n_tokens"] == e["n_tokens"] and r["rule"] == "bayes"
        assert r["temperature"] == temperature
        post = np.array([r["posteriors"][n] for n in names])
        s = (np.asarray(e["log_likelihoods"]) + trained["prior"]) / (temperature or 1.0)
        np.testing.assert_allclose(post, np.exp(s - np.logaddexp.reduce(s)), rtol=1e-5, atol=1e-12)
        assert abs(post.sum() - 1) < 1e-12 and names[int(np.argmax(post))] == r["prediction"]
        marginal = np.logaddexp.reduce(np.asarray(e["log_likelihoods"]) + trained["prior"])
        for value in (marginal, e["log_marginal"]):
            assert r["log_marginal"] == pytest.approx(value, **LL_APPROX)
        assert r["ood_score"] == pytest.approx(e["ood_score"], rel=1e-6)
        assert r["in_distribution"] == e["in_distribution"]
        if temperature == trained["metrics"]["calibration"]["temperatures"].get("bayes"):
            assert post.max() == pytest.approx(e["confidence"], rel=1e-6)
        assert r["truncated"] == (r["text_tokens"] + 1 > 128)
        assert r["truncated"] == (e["n_tokens"] == 128)  # the rows are full: text was cut
    assert any(r["truncated"] for r in rows) and not all(r["truncated"] for r in rows)


def test_predict_jsonl_to_a_file_equals_eval(trained, tmp_path):
    out = tmp_path / "new" / "labels.jsonl"  # its folder does not exist yet
    p = run_cli(
        "--mode=predict",
        f"--workdir={trained['workdir']}",
        f"--input={trained['folder'] / 'test.jsonl'}",
        f"--output={out}",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout == ""
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in trained["test"]]
    check_rows(rows, trained)
    assert p.stderr.strip().splitlines()[-1].startswith(f"predict: {len(rows)} texts (bayes rule)")


def test_console_script_reads_txt_on_stdin_from_another_folder(trained, tmp_path):
    """`gencls` is cli:main (pyproject); run from another folder, with a workdir relative to
    it, texts one per line on stdin, predictions on stdout."""
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"gencls": "gencls_jax.cli:main"}
    module, func = scripts["gencls"].split(":")
    program = [
        "-c",
        f"import sys, {module} as m; print('module', m.__file__, file=sys.stderr); m.{func}()",
    ]
    texts = "\n".join(r["text"] for r in trained["test"]) + "\n"
    p = run_cli(
        "--mode=predict",
        f"--workdir={os.path.relpath(trained['workdir'], tmp_path)}",
        stdin=texts,
        cwd=tmp_path,
        program=program,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"module {REPO / 'gencls_jax' / 'cli.py'}" in p.stderr  # this checkout's code
    rows = [json.loads(line) for line in p.stdout.splitlines()]  # stdout holds only jsonl
    assert [r["id"] for r in rows] == [f"stdin:{i + 1}" for i in range(len(trained["test"]))]
    check_rows(rows, trained)


def test_stdout_closed_early_exits_without_a_traceback(trained):
    """`gencls --mode=predict ... | head -1`: the reader has gone before the first line."""
    p = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "run.py"),
            "--mode=predict",
            f"--workdir={trained['workdir']}",
            f"--input={trained['folder'] / 'test.jsonl'}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=600) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err, err[-2000:]


def bad_jsonl(trained, path: Path) -> Path:
    """The test texts with an invalid JSON line (row 3) and a line without a text (row 6)."""
    lines = [json.dumps(r) for r in trained["test"]]
    lines.insert(2, '{"id": "broken", "text": ')
    lines.insert(5, json.dumps({"id": "no_text", "review": "x"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_line_is_a_one_line_error_or_skipped_and_counted(trained, tmp_path):
    path = bad_jsonl(trained, tmp_path / "new.jsonl")
    with pytest.raises(DataError) as reader_error:  # the training data reader's message
        read_jsonl(path, "text", "label", "id", labeled=False)
    assert str(reader_error.value).startswith(f"{path}:3: invalid JSON")
    p = run_cli("--mode=predict", f"--workdir={trained['workdir']}", f"--input={path}")
    assert p.returncode != 0 and p.stdout == ""
    assert p.stderr.strip().splitlines()[-1] == f"error: {reader_error.value}"
    assert "restored step" not in p.stderr, "the inputs are checked before the model loads"

    p = run_cli(
        "--mode=predict",
        f"--workdir={trained['workdir']}",
        "--skip_bad_lines",
        stdin=path.read_text(),
    )
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in trained["test"]]
    check_rows(rows, trained)
    assert "skipped a bad line: <stdin>:3: invalid JSON" in p.stderr
    assert "skipped a bad line: <stdin>:6: missing field 'text'" in p.stderr
    assert f"predict: {len(rows)} texts (bayes rule, skipped 2 bad lines)" in p.stderr


def test_csv_with_quoted_newlines_and_a_bad_record(trained, clf, tmp_path):
    """In process: read_inputs + run_predict. A record spanning two lines keeps the rows after it
    numbered by line; the bad record (one value too many) is skipped by its own line."""
    path = tmp_path / "new.csv"
    multi = 'Two lines,\nboth "quoted".'
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        for i, r in enumerate(trained["test"]):
            w.writerow([r["id"], r["text"]])
            if i == 1:
                w.writerow(["multi", multi])
                w.writerow(["oops", "too", "many"])
    bad_line = path.read_text().splitlines().index("oops,too,many") + 1
    with pytest.raises(DataError, match=rf"^{path}:{bad_line}: more values than header columns$"):
        inputs_lib.read_inputs(str(path))
    inputs = inputs_lib.read_inputs(str(path), skip_bad_lines=True)
    assert inputs.skipped == [f"{path}:{bad_line}: more values than header columns"]
    assert inputs.texts[2] == multi and inputs.where[2] == f"{path}:{bad_line - 1}"
    out = tmp_path / "labels.jsonl"
    summary = P.run_predict(clf, inputs, str(out))
    assert summary["texts"] == len(trained["test"]) + 1 and summary["skipped"] == 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows.pop(2)["id"] == "multi"
    assert [r["id"] for r in rows] == [r["id"] for r in trained["test"]]
    check_rows(rows, trained)


def test_txt_rows_blank_lines_and_bad_utf8(tmp_path):
    """One text per line: blank lines skipped, rows numbered from 1, CRLF dropped; invalid UTF-8
    names its row (skipped with --skip_bad_lines)."""
    path = tmp_path / "new.txt"
    path.write_bytes(b"first text\r\n\n  \nsecond \xff text\nthird text\n")
    with pytest.raises(DataError, match=rf"^{path}:4: invalid UTF-8 at byte 7$"):
        inputs_lib.read_inputs(str(path))
    got = inputs_lib.read_inputs(str(path), skip_bad_lines=True)
    assert got.texts == ["first text", "third text"]
    assert got.ids == ["new.txt:1", "new.txt:5"] and got.where == [f"{path}:1", f"{path}:5"]
    assert got.skipped == [f"{path}:4: invalid UTF-8 at byte 7"]


def test_explain_command_on_the_trained_run(trained, tmp_path):
    """--mode=explain: the page and its jsonl; the log-likelihoods are eval's, and the token
    terms plus the prior term add up to the margin."""
    short = trained["test"][-2:]
    long = trained["test"][0]
    page = tmp_path / "why.html"
    p = run_cli(
        "--mode=explain",
        f"--workdir={trained['workdir']}",
        f"--text={long['text']}",
        *(f"--text={r['text']}" for r in short),
        f"--output={page}",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert page.read_text().count("<section>") == 3
    rows = [json.loads(line) for line in page.with_suffix(".jsonl").read_text().splitlines()]
    names = ["neg", "pos"]
    for r, i in zip(rows, [0, len(trained["test"]) - 2, len(trained["test"]) - 1]):
        e = trained["evals"][i]
        ll = [r["log_likelihoods"][n] for n in names]
        np.testing.assert_allclose(ll, e["log_likelihoods"], rtol=1e-5, atol=1e-3)
        assert r["predicted"] == names[e["prediction"]] and r["n_tokens"] == e["n_tokens"]
        terms = [t["term"] for t in r["tokens"] if t["term"] is not None]
        assert len(terms) == r["n_tokens"]
        assert abs(sum(terms) + r["prior_term"] - r["margin"]) < 1e-9 * max(1, abs(r["margin"]))
    assert rows[0]["truncated"] and not rows[1]["truncated"]
    assert p.stdout.strip().splitlines()[-1] == f"-> {page}, {page.with_suffix('.jsonl')}"


def test_ctrl_c_mid_scoring_exits_130_and_keeps_the_output(trained, tmp_path):
    """SIGINT while 3,000 texts are being scored: exit 130 within seconds, one line, no
    traceback, and an existing --output as it was (before: emptied at once, and the run went
    on scoring after printing a traceback from a GC callback)."""
    texts = [r["text"] for r in trained["test"][:8]] * 375
    src = write_jsonl(tmp_path / "many.jsonl", [{"text": t} for t in texts])
    out = tmp_path / "labels.jsonl"
    out.write_text("the previous predictions\n")
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "w") as err:
        p = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "run.py"),
                "--mode=predict",
                f"--workdir={trained['workdir']}",
                f"--input={src}",
                f"--output={out}",
                "--config.progress_bars=True",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        deadline = time.time() + 300
        while "predicting" not in err_path.read_text() and time.time() < deadline:
            assert p.poll() is None, err_path.read_text()[-3000:]
            time.sleep(0.1)
        p.send_signal(signal.SIGINT)
        t0 = time.time()
        rc = p.wait(timeout=60)
    elapsed = time.time() - t0
    stderr = err_path.read_text()
    assert rc == 130 and elapsed < 10, (rc, elapsed, stderr[-3000:])
    assert stderr.strip().splitlines()[-1] == interrupt.MESSAGE
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    assert out.read_text() == "the previous predictions\n"
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "labels.jsonl",
        "many.jsonl",
        "stderr.txt",
    ]


def test_predict_and_explain_read_a_locked_workdir_and_add_to_its_history(trained, tmp_path):
    """A training holding the workdir's lock does not stop predict or explain (they only read
    it); each adds its line to history.jsonl. explain --output=x.jsonl: the jsonl there, the
    page beside it as x.html."""
    wd = trained["workdir"]
    before = read_jsonl_lines(Path(wd) / "history.jsonl")
    src = trained["folder"] / "test.jsonl"
    with WorkdirLock(wd, "train"):
        p = run_cli("--mode=predict", f"--workdir={wd}", f"--input={src}")
        assert p.returncode == 0, p.stderr[-3000:]
        check_rows([json.loads(line) for line in p.stdout.splitlines()], trained)
        x = tmp_path / "x.jsonl"
        p = run_cli("--mode=explain", f"--workdir={wd}", "--text=Dreadful.", f"--output={x}")
        assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip().splitlines()[-1] == f"-> {tmp_path / 'x.html'}, {x}"
    assert (tmp_path / "x.html").read_text().startswith("<!DOCTYPE html>")
    (row,) = [json.loads(line) for line in x.read_text().splitlines()]
    (ref,) = [e for e in trained["evals"] if e["id"] == "s2"]  # eval's line of "Dreadful."
    assert row["id"] == "text 1" and row["n_tokens"] == ref["n_tokens"]
    ll = [row["log_likelihoods"][n] for n in ("neg", "pos")]
    np.testing.assert_allclose(ll, ref["log_likelihoods"], rtol=1e-5, atol=1e-3)
    added = read_jsonl_lines(Path(wd) / "history.jsonl")[len(before) :]
    assert [(h["mode"], h["texts"], h["output"]) for h in added] == [
        ("predict", len(trained["test"]), "<stdout>"),
        ("explain", 1, f"{tmp_path / 'x.html'}, {x}"),
    ]
    assert added[0]["input"] == str(src) and added[1]["input"] == "--text"


def test_explain_output_dash_is_the_jsonl_on_stdout(trained, tmp_path):
    """--output=-: the jsonl on stdout, the summary lines on stderr, no file named '-' (before:
    files '-' and '-.jsonl' in the current folder)."""
    p = run_cli(
        "--mode=explain",
        f"--workdir={trained['workdir']}",
        "--text=A wonderful film, I loved it.",
        "--text=Dreadful.",
        "--output=-",
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["text 1", "text 2"]
    for r in rows:
        terms = [t["term"] for t in r["tokens"] if t["term"] is not None]
        assert abs(sum(terms) + r["prior_term"] - r["margin"]) < 1e-9 * max(1, abs(r["margin"]))
    assert p.stderr.strip().splitlines()[-1] == "-> <stdout>"
    assert "text 2: " in p.stderr
    assert list(tmp_path.iterdir()) == []


# --- issue 26: out of distribution, calibration, abstaining ----------------------------------


def ece_by_loops(conf, correct, bins: int) -> float:
    """Top-label ECE written out: bins (b/bins, (b+1)/bins], bin 0 from 0."""
    total = 0.0
    for b in range(bins):
        members = [
            i for i, c in enumerate(conf) if b / bins < c <= (b + 1) / bins or (b == 0 and c == 0)
        ]
        if members:
            acc = sum(bool(correct[i]) for i in members) / len(members)
            mean_conf = sum(conf[i] for i in members) / len(members)
            total += len(members) / len(conf) * abs(acc - mean_conf)
    return total


def split_between(confidences) -> float:
    """A threshold P in the widest gap between distinct top posteriors: float noise between
    eval's and predict's posteriors cannot move a text across it."""
    c = np.unique(confidences)
    assert len(c) >= 2, "every text has the same top posterior: nothing to abstain on"
    i = int(np.argmax(np.diff(c)))
    return float((c[i] + c[i + 1]) / 2)


def test_eval_fits_on_validation_and_reports_them(trained):
    """metrics.json's OOD threshold is the ceil(0.95 n)-th smallest validation OOD score (a
    float64 reference from predictions_val.jsonl), the temperature is the fit on validation,
    the ECE that of the test posteriors (written-out loops); report.md shows the reliability
    diagram, the abstention table and the OOD section."""
    from gencls_jax.scoring import calibration as C

    wd, m, prior = trained["workdir"], trained["metrics"], trained["prior"]
    val = read_jsonl_lines(wd / "predictions_val.jsonl")
    ll = np.array([r["log_likelihoods"] for r in val])
    n_tok = np.array([r["n_tokens"] for r in val])
    ood = -np.logaddexp.reduce(ll + prior, axis=1) / n_tok
    assert m["ood"]["keep"] == 0.95 and m["ood"]["fitted_on"] == "val"
    assert m["ood"]["threshold"] == np.sort(ood)[math.ceil(0.95 * len(ood)) - 1]
    assert [r["ood_score"] for r in val] == pytest.approx(ood.tolist(), rel=1e-12)
    assert m["ood"]["splits"]["val"]["kept"] >= 0.95
    cal = m["calibration"]
    t, at_end = C.fit_temperature(ll + prior, [r["label"] for r in val])
    if at_end:  # four validation texts may well all be right (or wrong): no finite T is best
        assert "bayes" not in cal["temperatures"] and cal["temperature"] is None
        assert cal["temperature_at_bound"]["bayes"] == pytest.approx(t)
    else:
        assert cal["temperatures"]["bayes"] == pytest.approx(t) == cal["temperature"]
    s = np.array([e["log_likelihoods"] for e in trained["evals"]]) + prior
    labels = np.array([e["label"] for e in trained["evals"]])
    for key, temperature in (("ece", 1.0), ("ece_calibrated", cal["temperature"])):
        if temperature is None:
            assert cal[key] is None
            continue
        post = np.exp(s / temperature - np.logaddexp.reduce(s / temperature, axis=1)[:, None])
        conf, correct = post.max(axis=1), post.argmax(axis=1) == labels
        assert cal["split"] == "test" and cal[key] == pytest.approx(
            ece_by_loops(conf.tolist(), correct, 15), abs=1e-12
        )
    assert [e["confidence"] for e in trained["evals"]] == pytest.approx(conf.tolist(), rel=1e-12)
    report = (wd / "report.md").read_text()
    for png in ("reliability_test.png", "coverage_test.png"):
        assert f"]({png})" in report
        assert (wd / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Calibration (test, bayes rule)" in report and f"{cal['ece']:.4f} as scored" in report
    assert "## Abstaining (test): `--abstain_below=P`" in report
    for row in cal["abstain"]:
        assert row["answered"] == int(np.sum(conf >= row["abstain_below"]))
        assert f"| {row['abstain_below']:g} | {row['answered']} |" in report
    assert "## Out of distribution" in report and f"<= {m['ood']['threshold']:.4f}" in report


def test_abstain_below_answers_null_exactly_under_p(trained, tmp_path):
    """--abstain_below=P: null exactly where the top posterior is under P, every other line as
    without it, the count in the summary; P outside (0, 1) is one line before the model loads."""
    threshold = split_between([e["confidence"] for e in trained["evals"]])
    src = trained["folder"] / "test.jsonl"
    p = run_cli(
        "--mode=predict",
        f"--workdir={trained['workdir']}",
        f"--input={src}",
        f"--abstain_below={threshold!r}",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    null = [max(r["posteriors"].values()) < threshold for r in rows]
    assert [r["prediction"] is None for r in rows] == null and 0 < sum(null) < len(rows)
    names = ["neg", "pos"]
    for r, e in zip(rows, trained["evals"]):
        assert r["prediction"] in (None, names[e["prediction"]])
    assert f"{sum(null)} abstained" in p.stderr.strip().splitlines()[-1]
    p = run_cli(
        "--mode=predict", f"--workdir={trained['workdir']}", f"--input={src}", "--abstain_below=1"
    )
    assert p.returncode == 1 and p.stdout == "" and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1] == (
        "error: --abstain_below=1.0: must be in (0, 1), the top posterior under which the "
        "answer is null"
    )
    assert "restored step" not in p.stderr, "checked before the model loads"


def test_classifier_api_agrees_with_eval_and_applies_a_temperature(trained, clf, tmp_path):
    """GenerativeClassifier's judged, in_distribution, log_marginal and predict(abstain_below)
    give eval's per-text figures; with a temperature, predict's posteriors are softmax(scores /
    T)."""
    texts, evals = [r["text"] for r in trained["test"]], trained["evals"]
    j = clf.judged(texts)
    assert j.log_marginal == pytest.approx([e["log_marginal"] for e in evals], **LL_APPROX)
    assert j.ood_scores == pytest.approx([e["ood_score"] for e in evals], rel=1e-6)
    assert j.confidence == pytest.approx([e["confidence"] for e in evals], rel=1e-6)
    assert j.in_distribution.tolist() == [e["in_distribution"] for e in evals]
    assert clf.in_distribution(texts).tolist() == [e["in_distribution"] for e in evals]
    assert clf.log_marginal(texts[-1]) == pytest.approx(evals[-1]["log_marginal"], **LL_APPROX)
    assert clf.ood_threshold == trained["metrics"]["ood"]["threshold"]
    threshold = split_between([e["confidence"] for e in evals])
    names = ["neg", "pos"]
    assert clf.predict(texts, abstain_below=threshold) == [
        names[e["prediction"]] if e["confidence"] >= threshold else None for e in evals
    ]
    with pytest.raises(DataError, match=r"--abstain_below=0: must be in \(0, 1\)"):
        clf.predict(texts, abstain_below=0)
    assert P.fit_warnings(clf, "bayes") == [
        w for w in P.fit_warnings(clf, "bayes") if "no temperature for the bayes rule" in w
    ], "the run's threshold was chosen at the keep rate its config asks for"
    other_keep = copy.copy(clf)  # as if the last eval had chosen the threshold at 0.9
    other_keep.ood_keep = 0.9
    assert P.fit_warnings(other_keep, "bayes")[-1].startswith(
        "eval.ood_keep=0.95, but the run's threshold keeps 0.9 of its validation texts"
    )
    warm = copy.copy(clf)  # as if eval had fitted T = 7 on validation
    warm.temperatures = {"bayes": 7.0}
    assert warm.temperature == 7.0 and P.fit_warnings(warm, "bayes") == []
    out = tmp_path / "warm.jsonl"
    summary = P.run_predict(
        warm, inputs_lib.read_inputs(str(trained["folder"] / "test.jsonl")), str(out)
    )
    check_rows(read_jsonl_lines(out), trained, temperature=7.0)
    assert "temperature 7" in P.predictions_summary(summary)


def test_a_run_evaluated_without_validation_texts(trained, tmp_path, caplog):
    """eval.splits without 'val': no temperature, no threshold (metrics.json and report.md say
    so); predict then writes temperature null and no in_distribution, one warning each; the
    API's in_distribution is a RunError; an eval.ood_keep asked for without validation texts is
    a one-line error."""
    from gencls_jax.commands import evaluate as E
    from gencls_jax.errors import RunError
    from gencls_jax.runs import rules

    wd = tmp_path / "run"
    shutil.copytree(trained["workdir"], wd)
    p = run_cli(
        "--mode=eval",
        f"--workdir={wd}",
        "--config.eval.ood_keep=0.9",
        "--config.eval.splits=('test',)",
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1] == (
        "error: --config.eval.ood_keep=0.9: the OOD threshold is chosen on the validation "
        "texts, and eval.splits=('test',) scores none (add 'val')"
    )
    config, _ = rules.eval_config(wd, None)
    config.eval.splits = ("test",)
    E.evaluate(config, wd)
    m = json.loads((wd / "metrics.json").read_text())
    assert m["calibration"]["temperature"] is None and m["calibration"]["temperatures"] == {}
    assert m["calibration"]["ece"] == pytest.approx(trained["metrics"]["calibration"]["ece"])
    assert m["ood"]["threshold"] is None and "kept" not in m["ood"]["splits"]["test"]
    report = (wd / "report.md").read_text()
    assert "no temperature: no validation texts were scored" in report
    assert "no threshold: no validation texts were scored" in report
    bare = GenerativeClassifier.load(wd)
    with pytest.raises(RunError, match="^the run has no OOD threshold"):
        bare.in_distribution(["A wonderful film."])
    out = tmp_path / "labels.jsonl"
    with caplog.at_level("WARNING"):
        P.run_predict(bare, inputs_lib.read_inputs(str(trained["folder"] / "test.jsonl")), str(out))
    rows, evals = read_jsonl_lines(out), trained["evals"]
    assert all("in_distribution" not in r and r["temperature"] is None for r in rows)
    with_fields = [{**r, "in_distribution": e["in_distribution"]} for r, e in zip(rows, evals)]
    check_rows(with_fields, trained, temperature=None)
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum("no temperature for the bayes rule" in w for w in said) == 1, said
    assert sum("no OOD threshold" in w for w in said) == 1, said


def test_bench_ood_smoke_on_the_trained_run(trained, tmp_path, capsys):
    """bench/ood.py --limit: every foreign set built and scored, AUROCs in [0, 1], the length
    buckets holding every text, the JSON written."""
    spec = importlib.util.spec_from_file_location("ood_bench", REPO / "bench" / "ood.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    path = tmp_path / "ood.json"
    out = bench.main(
        [
            f"--workdir={trained['workdir']}",
            "--limit=12",
            f"--out={path}",
            f"--data={IMDB_DIR.parent}",
        ]
    )
    assert json.loads(path.read_text()) == json.loads(json.dumps(out))
    assert [r["set"] for r in out["sets"]] == list(bench.SETS) and out["n_in"] == 10
    assert out["ood_threshold"] == trained["metrics"]["ood"]["threshold"]
    for r in out["sets"]:
        assert r["n"] == 12 and 0 <= r["auroc_ood"] <= 1 and 0 <= r["auroc_msp"] <= 1
        assert 0 <= r["kept"] <= 1
        assert len(r["by_length"]) == len(out["length_edges"]) + 1
        assert sum(b["n_out"] for b in r["by_length"]) == 12
        assert sum(b["n_in"] for b in r["by_length"]) == 10
    printed = capsys.readouterr().out
    assert printed.startswith("set ") and len(printed.strip().splitlines()) == 1 + len(bench.SETS)


def test_the_interrupt_line_starts_a_line_of_its_own_after_an_open_progress_bar(monkeypatch):
    """When the watchdog ends a program mid-bar (the bar never closed), the one line is still
    the last line of stderr (CI once read 'predicting: 3%|...| 5/188 ...interrupted ...')."""
    import io

    from tqdm.auto import tqdm

    for bar_open in (True, False):
        err = io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        monkeypatch.setitem(interrupt._state, "reported", False)
        bar = tqdm(total=10, desc="predicting", file=err)
        bar.update(3)
        bar.refresh()
        if not bar_open:
            bar.close()
        interrupt.report()
        text = err.getvalue()
        bar.close()
        assert text.splitlines()[-1] == interrupt.MESSAGE, text
        assert text.count(interrupt.MESSAGE) == 1
        # the bar's line, then the message: no blank line between them, bar closed or open
        assert "3/10" in text.splitlines()[-2] and "\n\n" not in text, text
