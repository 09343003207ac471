"""search.candidates (issue 24): a training run that chooses among candidate configs on the
validation texts, then is the chosen one's run.

On tiny per_class runs of two made-up topics (test_add_class's texts; a compact vocabulary, so a
step costs little; the candidates differ in seed only, so they share one compiled step), with a
search.min_gain no seed can clear, so that the choice is forced: W equals a plain run of the
command's own config (every logged step and validation, every log-likelihood), and the figures
compared are those in the candidates' own validation logs; a search interrupted in candidate 1
and run again skips candidate 0, resumes candidate 1 and ends as the uninterrupted search did;
eval, predict, explain, add_class's checks, an ensemble and the Python API take W as an
ordinary run. The state machine (a winner other than candidate 0 moved into W, the losers'
checkpoints deleted, a raised epoch count, a finished search run again, a plain run refused
mid-search) is checked with a stub trainer; bad candidate strings are one-line errors, on the
command line too."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest
from conftest import REPO, SHARED, TOKENIZER_DIR
from test_add_class import own_config, tiny_config, topic_rows, write_jsonl

from gencls_jax.classifier import EnsembleClassifier, GenerativeClassifier
from gencls_jax.commands import add_class, ensemble, evaluate, explain, predict, search
from gencls_jax.commands.train import train_and_evaluate
from gencls_jax.data.inputs import Inputs
from gencls_jax.errors import DataError, RunError
from gencls_jax.model import gpt2
from gencls_jax.reports.summary import end_of_run
from gencls_jax.runs import rules
from gencls_jax.system.fileio import read_jsonl
from gencls_jax.training import loop

pytestmark = pytest.mark.skipif(not TOKENIZER_DIR.exists(), reason="needs ../shared/data")

TOPICS = ["science", "sports"]
INTERRUPT_AT = 2  # candidate 1 mid-epoch (3 steps an epoch)
REAL_TRAIN = loop.train


def search_config(folder: Path, files: dict, candidates=("seed=1",), min_gain=100.0, **keys):
    """configs/tiny.py on the topic files, one epoch of 3 steps, compared on val_loss (no seed
    gains 100 nats: candidate 0 is kept); the seed may vary because data.split_seed fixes the
    held-out texts."""
    c = tiny_config(folder, files["train"], files["val"], files["test"])
    c.train.update(dict(best_metric="val_loss", min_steps=0, epochs=1, log_every=1))
    c.data.update(dict(compact_vocab=64, split_seed=0))
    c.search.update(dict(candidates=tuple(candidates), min_gain=min_gain, **keys))
    return c


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("search_data")
    return {
        name: write_jsonl(d / f"{name}.jsonl", topic_rows(TOPICS, n, seed))
        for name, n, seed in (("train", 24, 0), ("val", 4, 1), ("test", 6, 2))
    }


def trained_where(monkeypatch, interrupt_call: int | None = None) -> list[str]:
    """The workdirs `loop.train` is called for, in order; with `interrupt_call`, a SIGINT (as
    Ctrl-C sends) in that call at step INTERRUPT_AT, after which the loop saves and returns."""
    calls, real = [], REAL_TRAIN

    def kill(step, _record):  # step n's record comes during step n + 1
        if step == INTERRUPT_AT - 1:
            os.kill(os.getpid(), signal.SIGINT)

    def train(*args, **kw):
        calls.append(Path(args[1]).name)
        if len(calls) == interrupt_call:
            kw["callbacks"] = [kill]
        return real(*args, **kw)

    monkeypatch.setattr(loop, "train", train)
    return calls


def init_once(monkeypatch) -> None:
    """gpt2.init_params remembered per (architecture, seed): its flax init compiles for ~3 s on
    every call, and each of the 8 training calls below makes one model or two. The same
    arguments give the same arrays (the loop copies them before its step donates them); a
    traced call (a checkpoint's template) is not remembered."""
    real, made = gpt2.init_params, {}

    def init_params(config, seed=0):
        if (config, seed) in made:
            return made[config, seed]
        params = real(config, seed)
        if not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(params)):
            made[config, seed] = params
        return params

    monkeypatch.setattr(gpt2, "init_params", init_params)


@pytest.fixture(scope="module")
def runs(files, tmp_path_factory):
    """A: a search of seeds 0 and 1; P: a plain run of the command's own config (candidate 0,
    what A keeps); B: A's search (keeping the losers' checkpoints) interrupted in candidate 1,
    then run again."""
    d = tmp_path_factory.mktemp("search")
    a, p, b = d / "A", d / "P", d / "B"
    mp = pytest.MonkeyPatch()
    init_once(mp)
    out = {"A": train_and_evaluate(search_config(d, files), a)}
    out["P"] = train_and_evaluate(search_config(d, files, candidates=(), min_gain=0.0), p)
    config_b = search_config(d, files, keep_candidates=True)
    calls = {"cut": trained_where(mp, interrupt_call=2)}
    out["B_cut"] = train_and_evaluate(config_b, b)
    calls["again"] = trained_where(mp)
    out["B"] = train_and_evaluate(config_b, b)
    mp.undo()
    return dict(dir=d, A=a, P=p, B=b, out=out, calls=calls)


def records(workdir: Path, kind: str) -> list[dict]:
    return [r for r in read_jsonl(workdir / "metrics.jsonl") if r["kind"] == kind]


def assert_same_training(a: Path, b: Path) -> None:
    """Every logged step and validation of two runs, their test log-likelihoods and labels."""
    for kind in ("train", "eval"):
        ra, rb = records(a, kind), records(b, kind)
        assert ra and [r["step"] for r in ra] == [r["step"] for r in rb]
        for key in ra[0].keys() - {"kind", "tokens_per_s", "steps_per_s"}:
            assert [r[key] for r in ra] == [r[key] for r in rb], key
    for split in ("val", "test"):
        pa, pb = (
            read_jsonl(a / f"predictions_{split}.jsonl"),
            read_jsonl(b / f"predictions_{split}.jsonl"),
        )
        assert [r["prediction"] for r in pa] == [r["prediction"] for r in pb]
        np.testing.assert_allclose(
            [r["log_likelihoods"] for r in pa], [r["log_likelihoods"] for r in pb], rtol=1e-6
        )


def best_val_loss(workdir: Path) -> float:
    return min(r["val_loss"] for r in records(workdir, "eval"))


def test_a_search_that_keeps_its_own_config_is_the_plain_run(runs):
    a, record = runs["A"], runs["out"]["A"]["search"]
    chosen, loser = record["chosen"], a / "search" / "1"
    assert chosen == 0 and record["reason"].startswith("kept candidate 0 (the run's own config)")
    # each candidate's figure, read back from its own validation log (the winner's is W's)
    assert [c["value"] for c in record["candidates"]] == [best_val_loss(a), best_val_loss(loser)]
    assert record["candidates"][1]["overrides"] == {"seed": 1}
    assert_same_training(runs["P"], a)
    m, p = (json.loads((w / "metrics.json").read_text()) for w in (a, runs["P"]))
    assert m["results"] == p["results"] and m["best_step"] == p["best_step"]
    assert (m["train_calls"], p["train_calls"]) == (2, 1)  # W's evaluation is a second call
    # W is a run, not a search: no folder of the winner left, the loser's figures kept
    assert not (a / "search" / str(chosen)).exists()
    assert not (loser / "checkpoints").exists() and not (loser / "export").exists()
    assert (loser / "train_summary.json").exists() and (loser / "config.json").exists()
    assert set(json.loads((loser / "metrics.json").read_text())["results"]) == {"val"}
    assert json.loads((a / "config.json").read_text())["seed"] == chosen


def test_an_interrupted_search_resumes_to_the_uninterrupted_one(runs):
    out, calls = runs["out"], runs["calls"]
    assert out["B_cut"]["stop_reason"] == "interrupted" and out["B_cut"]["steps"] == INTERRUPT_AT
    assert calls["cut"] == ["0", "1"]
    assert calls["again"] == ["1", "B"]  # candidate 0 skipped, candidate 1 resumed, then W
    a, b = out["A"]["search"], out["B"]["search"]
    assert b["chosen"] == a["chosen"] and b["reason"] == a["reason"]
    for ca, cb in zip(a["candidates"], b["candidates"]):
        assert {k: v for k, v in ca.items() if k != "train_wall_s"} == {
            k: v for k, v in cb.items() if k != "train_wall_s"
        }
    assert_same_training(runs["A"], runs["B"])
    loser = runs["B"] / "search" / str(1 - b["chosen"])
    assert (loser / "checkpoints").is_dir()  # search.keep_candidates=True


def test_metrics_report_and_summary_show_the_search(runs):
    a, out = runs["A"], runs["out"]["A"]
    m = json.loads((a / "metrics.json").read_text())
    s, res = m["search"], m["results"]
    assert s["val_test_gap"] == res["val"]["bayes"]["accuracy"] - res["test"]["bayes"]["accuracy"]
    assert s["chosen"] == out["search"]["chosen"] and s["metric"] == "val_loss"
    report = (a / "report.md").read_text()
    assert s["reason"] in report
    for c in s["candidates"]:  # one row each: its overrides and figure
        told = "seed=1" if c["index"] else "(the run's own)"
        assert len([r for r in report.splitlines() if f"| {told} | {c['value']:.4f} |" in r]) == 1
    spent = sum(c["train_wall_s"] for c in s["candidates"])
    line = f"search (2 candidates, {spent:.0f} s of training): {s['reason']}"
    assert line in end_of_run(str(a), out, "bayes").splitlines()


def test_every_command_takes_the_chosen_run_as_a_run(runs, files, tmp_path, capsys):
    a, d = runs["A"], runs["dir"]
    test_rows = read_jsonl(files["test"])
    want = [r["log_likelihoods"] for r in read_jsonl(a / "predictions_test.jsonl")]
    clf = GenerativeClassifier.load(a)
    np.testing.assert_allclose(clf.log_likelihoods([r["text"] for r in test_rows]), want, rtol=1e-5)
    before = json.loads((a / "metrics.json").read_text())
    evaluated = evaluate.evaluate(own_config(a), a)
    assert evaluated["results"] == before["results"]
    assert json.loads((a / "metrics.json").read_text())["search"] == before["search"]
    texts = [r["text"] for r in test_rows[:3]]
    inputs = Inputs(texts, ["a", "b", "c"], ["t:1", "t:2", "t:3"], [], "t")
    predict.run_command(own_config(a), str(a), "best", inputs, str(tmp_path / "p.jsonl"))
    np.testing.assert_allclose(
        [[r["log_likelihoods"][c] for c in TOPICS] for r in read_jsonl(tmp_path / "p.jsonl")],
        want[:3],
        rtol=1e-5,
    )
    explain.run_command(own_config(a), str(a), "best", inputs, against=None, output="-")
    assert len(capsys.readouterr().out.splitlines()) == 3
    e = ensemble.evaluate_ensemble([str(a), str(runs["P"])], d / "E")  # W and its twin
    assert e["results"]["test"] == before["results"]["test"]
    # add_class reads W as this before it trains the new class (test_add_class trains one)
    add_class.check_addable(json.loads((a / "run_info.json").read_text()), clf.config, "food", {})


def test_split_overrides_keeps_commas_inside_values():
    assert search.split_overrides(
        " train.lr=1e-4, data.bucket_lengths=(32, 64),model.init='a,b' "
    ) == [
        "train.lr=1e-4",
        "data.bucket_lengths=(32, 64)",
        "model.init='a,b'",
    ]


@pytest.mark.parametrize(
    "candidate, error",
    [
        ("train.lrr=1", "train.lrr is not a config key (did you mean train.lr?)"),
        ("train.lr=abc", "could not convert string to float: 'abc'"),
        ("train.lr", "'train.lr' is not KEY=VALUE"),
        ("", "no override"),
        ("train.lr=1e-4,train.lr=2e-4", "train.lr is set twice"),
        ("train.lr=0.001", "is candidate 0's config again"),  # tiny.py's own lr
        ("data.split_seed=3", "changes the validation texts or labels"),
        ("data.val_path=other.jsonl", "changes the validation texts or labels"),
        ("data.max_len=64", "changes the tokens train.best_metric=val_loss is the mean over"),
        ("train.best_metric=val_accuracy", "the figure the candidates are compared on"),
        ("eval.decision=calibrated", "an evaluation or runtime setting (kind runtime"),
        ("model.dtype=bfloat16", "an evaluation or runtime setting (kind eval"),
        ("search.min_gain=1", "the search's own setting"),
        ("model.conditioning=discriminative", "has no val_loss (train.best_metric)"),
        ("model.init=/no/such/folder", "model.init=/no/such/folder: no such folder"),
    ],
)
def test_a_bad_candidate_is_one_line_before_anything_trains(files, tmp_path, candidate, error):
    config = search_config(tmp_path, files, candidates=(candidate,))
    with pytest.raises((RunError, DataError)) as e:
        search.candidates(config)
    assert error in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "W").exists()


def test_seed_is_searched_only_with_fixed_validation_texts(files, tmp_path):
    config = search_config(tmp_path, files)
    config.data.split_seed = -1
    with pytest.raises(RunError, match="the seed also picks the validation texts"):
        search.candidates(config)
    config.train.best_metric = ""
    with pytest.raises(RunError, match="train.best_metric='' ranks no checkpoint"):
        search.candidates(config)


@pytest.mark.parametrize(
    "values, metric, min_gain, chosen, why",
    [
        ([0.80, 0.85, 0.85], "val_accuracy", 0.0, 1, "chose candidate 1 (c1): val_accuracy 0.8500"),
        ([0.80, 0.81, 0.79], "val_accuracy", 0.02, 0, "the best, candidate 1 (c1), has"),
        ([0.80, 0.80, 0.70], "val_accuracy", 0.0, 0, "no candidate beat its val_accuracy 0.8000"),
        ([2.0, 2.5, 1.5], "val_loss", 0.4, 2, "a gain of +0.5000 > search.min_gain 0.4"),
        ([2.0, None, 1.9], "val_loss", 0.0, 2, "chose candidate 2 (c2)"),
    ],
)
def test_choose_the_best_figure_beyond_min_gain(values, metric, min_gain, chosen, why):
    names = [f"c{i}" for i in range(len(values))]
    got, reason = search.choose(values, names, metric, min_gain)
    assert (got, why in reason) == (chosen, True), reason


def test_choose_needs_the_base_figure():
    with pytest.raises(RunError, match="candidate 0 recorded no val_loss"):
        search.choose([None, 1.0], ["a", "b"], "val_loss", 0.0)


def stub_trainer(workdir: Path, figures: dict, interrupt: set):
    """A train_one that writes what a run leaves (config, train_summary, checkpoints, export)
    with the figure `figures[seed]`, ending interrupted for the seeds in `interrupt` (once)."""
    calls = []

    def train_one(config, folder):
        folder = Path(folder)
        calls.append(folder.name)
        if folder == workdir:
            return {"stop_reason": "completed", "evaluated": True}
        for heavy in ("checkpoints", "export"):
            (folder / heavy).mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(config.to_json_best_effort())
        cut = config.seed in interrupt
        interrupt.discard(config.seed)
        out = dict(
            stop_reason="interrupted" if cut else "completed",
            steps=3,
            best=figures[config.seed],
            best_step=3,
            train_wall_s=1.0,
            eval_splits=list(config.eval.splits),
        )
        (folder / "train_summary.json").write_text(json.dumps(out))
        return out

    return train_one, calls


def test_the_search_state_machine_with_a_stub_trainer(files, tmp_path):
    w = tmp_path / "W"
    figures = {0: 1.0, 1: 0.5, 2: 0.7}  # val_loss: seed 1 is the best by 0.5
    train_one, calls = stub_trainer(w, figures, interrupt={2})
    config = search_config(tmp_path, files, candidates=("seed=1", "seed=2"), min_gain=0.3)
    assert search.train_best(config, w, train_one)["stop_reason"] == "interrupted"
    assert calls == ["0", "1", "2"]
    plain = search_config(tmp_path, files, candidates=(), min_gain=0.0)
    with pytest.raises(rules.ConfigMismatch, match="search.candidates"):
        rules.check_resume(w, plain)  # a plain run in a workdir holding a search
    config.train.epochs = 3  # more epochs: the finished candidates train on
    out = search.train_best(config, w, train_one)
    assert out["evaluated"] and calls[3:] == ["0", "1", "2", "W"]
    record = json.loads((w / "search" / "search.json").read_text())
    assert record["chosen"] == 1 and "+0.5000 > search.min_gain 0.3" in record["reason"]
    assert [c["trained_to"]["train.epochs"] for c in record["candidates"]] == [3, 3, 3]
    assert json.loads((w / "config.json").read_text())["seed"] == 1  # candidate 1's run
    assert json.loads((w / "train_summary.json").read_text())["search"] == record
    assert json.loads((w / "train_summary.json").read_text())["eval_splits"] == ["val"]
    assert not (w / "search" / "1").exists() and (w / "checkpoints").is_dir()
    for loser in ("0", "2"):
        assert sorted(p.name for p in (w / "search" / loser).iterdir()) == [
            "config.json",
            "train_summary.json",
        ]
    search.train_best(config, w, train_one)  # a finished search: W's run again, nothing else
    assert calls[7:] == ["W"]


def test_a_bad_candidate_on_the_command_line_is_one_line(files, tmp_path):
    w = tmp_path / "W"
    p = subprocess.run(
        [
            sys.executable,
            str(REPO / "run.py"),
            f"--config={REPO / 'configs' / 'tiny.py'}",
            f"--workdir={w}",
            f"--config.data.tokenizer={TOKENIZER_DIR}",
            "--config.search.candidates=('train.lr=1e-4,train.decision_weight=2',"
            "'data.split_seed=1')",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert p.stderr.strip().splitlines()[-1] == (
        "error: search.candidates: 'data.split_seed=1': data.split_seed cannot differ between "
        "candidates: it changes the validation texts or labels the candidates are compared on"
    )
    assert not (w / "config.json").exists()


# --- search.ensemble > 1: the K best candidates kept as the workdir's ensemble ---------------


@pytest.fixture(scope="module")
def ens(files, tmp_path_factory):
    """W: a search of seeds 0, 1, 2 keeping the 2 best as an ensemble, then the same command
    again (`calls`: what it trained; `before`: the members' history and checkpoints between)."""
    d = tmp_path_factory.mktemp("search_ens")
    w, mp = d / "W", pytest.MonkeyPatch()
    init_once(mp)
    config = search_config(d, files, candidates=("seed=1", "seed=2"), ensemble=2)
    first = train_and_evaluate(config, w)
    before = {i: member_files(w / "search" / str(i)) for i in range(3)}
    calls = trained_where(mp)
    again = train_and_evaluate(config, w)
    mp.undo()
    return dict(dir=d, W=w, first=first, again=again, calls=calls, before=before)


def member_files(folder: Path) -> tuple:
    """A candidate's history.jsonl and the files under its checkpoints/ (what training adds)."""
    ckpt = folder / "checkpoints"
    files = sorted(str(p.relative_to(folder)) for p in ckpt.rglob("*")) if ckpt.exists() else []
    return (folder / "history.jsonl").read_text(), files


def test_an_ensemble_search_is_the_ensemble_of_its_best_candidates(ens, files):
    """The 2 best of 3 by their own validation logs are kept (left in search/<i>/, the third's
    checkpoints deleted), and W is what --mode=eval --workdirs makes of them: a separate
    evaluate_ensemble of copies of the two member folders (their config's eval.splits widened
    to val and test, as W's) into another folder gives the same figures and log-likelihoods."""
    w, d = ens["W"], ens["dir"]
    record = json.loads((w / "search" / "search.json").read_text())
    figures = [best_val_loss(w / "search" / str(i)) for i in range(3)]
    assert [c["value"] for c in record["candidates"]] == figures
    want = sorted(range(3), key=lambda i: (figures[i], i))[:2]  # val_loss: lower is better
    assert record["kept"] == want and "chosen" not in record
    assert record["reason"].startswith("kept 2 of 3 candidates as an ensemble")
    loser = w / "search" / str(({0, 1, 2} - set(want)).pop())
    assert not (loser / "checkpoints").exists() and (loser / "train_summary.json").exists()
    for i in want:
        assert (w / "search" / str(i) / "checkpoints").is_dir()
    refs = []
    for i in want:  # the members as a user would pass them, but scoring test too
        ref = shutil.copytree(w / "search" / str(i), d / "ref" / str(i))
        cfg = json.loads((ref / "config.json").read_text())
        cfg["eval"]["splits"] = ["val", "test"]
        (ref / "config.json").write_text(json.dumps(cfg))
        refs.append(str(ref))
    ensemble.evaluate_ensemble(refs, d / "OUT")
    mine, ref = (json.loads((x / "metrics.json").read_text()) for x in (w, d / "OUT"))
    assert set(mine["results"]) == {"val", "test"} and mine["results"] == ref["results"]
    for split in ("val", "test"):
        got, exp = (read_jsonl(x / f"predictions_{split}.jsonl") for x in (w, d / "OUT"))
        assert [r["prediction"] for r in got] == [r["prediction"] for r in exp]
        np.testing.assert_allclose(
            [r["log_likelihoods"] for r in got], [r["log_likelihoods"] for r in exp], rtol=1e-6
        )
    members = [str((w / "search" / str(i)).resolve()) for i in want]
    assert [m["workdir"] for m in mine["ensemble"]["members"]] == members
    assert json.loads((w / "run_info.json").read_text())["ensemble"]["members"] == members
    assert mine["search"]["kept"] == want and mine["search"]["reason"] == record["reason"]
    assert json.loads((w / "config.json").read_text())["search"]["ensemble"] == 2
    report = (w / "report.md").read_text()
    assert record["reason"] in report and report.count("(kept) |") == 2
    assert ens["first"]["members"] == [str(w / "search" / str(i)) for i in want]


def test_an_ensemble_search_run_again_evaluates_it_again(ens):
    """The same command on a finished ensemble search trains nothing (no loop.train call, the
    members' history and checkpoints as they were) and gives the same figures."""
    w = ens["W"]
    assert ens["calls"] == []
    assert {i: member_files(w / "search" / str(i)) for i in range(3)} == ens["before"]
    assert ens["again"]["results"] == ens["first"]["results"]
    modes = [r["mode"] for r in read_jsonl(w / "history.jsonl")]
    assert modes == ["eval", "eval"]


def test_predict_and_load_take_the_ensemble_search_as_an_ensemble(ens, files, tmp_path):
    """predict on W (one text) and GenerativeClassifier.load(W) average the kept members; eval
    on W is refused as on any ensemble folder."""
    w = ens["W"]
    row = read_jsonl(files["test"])[0]
    want = next(r for r in read_jsonl(w / "predictions_test.jsonl") if r["id"] == row["id"])
    clf = GenerativeClassifier.load(w)
    assert isinstance(clf, EnsembleClassifier) and len(clf.members) == 2
    np.testing.assert_allclose(
        clf.log_likelihoods([row["text"]]), [want["log_likelihoods"]], rtol=1e-5
    )
    inputs = Inputs([row["text"]], ["a"], ["t:1"], [], "t")
    predict.run_command(own_config(w), str(w), "best", inputs, str(tmp_path / "p.jsonl"))
    (got,) = read_jsonl(tmp_path / "p.jsonl")
    np.testing.assert_allclose(
        [got["log_likelihoods"][c] for c in TOPICS], want["log_likelihoods"], rtol=1e-5
    )
    with pytest.raises(RunError, match="holds an ensemble of runs"):
        evaluate.evaluate(own_config(w), w)


def test_keep_best_keeps_the_k_best_with_a_figure():
    names = ["c0", "c1", "c2", "c3"]
    assert search.keep_best([0.8, 0.9, 0.8, None], names, "val_accuracy", 2)[0] == [1, 0]
    assert search.keep_best([2.0, 1.0, 1.5, 1.0], names, "val_loss", 3)[0] == [1, 3, 2]
    kept, why = search.keep_best([2.0, None, 1.5, 1.0], names, "val_loss", 5)
    assert kept == [3, 2, 0] and "(only 3 recorded a val_loss)" in why
    with pytest.raises(RunError, match="no candidate recorded a val_loss"):
        search.keep_best([None, None], names[:2], "val_loss", 2)


@pytest.mark.parametrize("k", [0, -1, 1.5, "2", True])
def test_a_bad_search_ensemble_is_one_line_before_anything_trains(files, tmp_path, k):
    values = search_config(tmp_path, files).to_dict()  # as a config file's own dict makes it
    values["search"]["ensemble"] = k
    config = ml_collections.ConfigDict(values)
    with pytest.raises(RunError) as e:
        search.train_best(config, tmp_path / "W", lambda *a: pytest.fail("trained"))
    assert "search.ensemble: the number of candidates kept, a whole number >= 1" in str(e.value)
    assert "\n" not in str(e.value) and not (tmp_path / "W").exists()


def test_an_ensemble_search_state_machine_with_a_stub_trainer(files, tmp_path, monkeypatch):
    """search.ensemble larger than the candidates keeps them all (none deleted); a search cut
    while evaluating the ensemble (a Ctrl-C) evaluates it on the next call without training;
    a changed model key on a finished one is refused."""
    w = tmp_path / "W"
    train_one, calls = stub_trainer(w, {0: 1.0, 1: 0.5, 2: 0.7}, interrupt=set())
    evaluated = []

    def evaluate_ensemble(members, out, config, search):
        evaluated.append(members)
        if len(evaluated) == 1:
            raise KeyboardInterrupt
        return {"search": search}

    monkeypatch.setattr(ensemble, "evaluate_ensemble", evaluate_ensemble)
    config = search_config(tmp_path, files, candidates=("seed=1", "seed=2"), ensemble=5)
    with pytest.raises(KeyboardInterrupt):
        search.train_best(config, w, train_one)
    assert calls == ["0", "1", "2"]
    out = search.train_best(config, w, train_one)
    assert calls == ["0", "1", "2"]  # nothing trained again
    members = [str(w / "search" / i) for i in ("1", "2", "0")]
    assert evaluated == [members, members] and out["members"] == members
    assert out["search"]["kept"] == [1, 2, 0] and "search.ensemble=5" in out["search"]["reason"]
    for i in "012":
        assert (w / "search" / i / "checkpoints").is_dir()
    config.model.dropout = 0.2
    with pytest.raises(RunError, match="a search with another config .*model.dropout"):
        search.train_best(config, w, train_one)


def test_small_set_is_the_ensemble_of_three_seeds_on_one_validation_split(tmp_path):
    """configs/small_set.py's recipe: seeds 0, 1, 2 kept as one ensemble, on the validation texts
    data.split_seed=0 holds out for all three (the search accepts the seed as a candidate)."""
    sys.path.insert(0, str(REPO))
    from configs import small_set

    c = small_set.get_config()
    trec = SHARED / "data" / "trec"
    c.data.update(dict(train_path=str(trec / "train.jsonl"), test_path=str(trec / "test.jsonl")))
    c.model.init = "scratch"  # its own is the IMDB export; the candidates' paths are checked
    cands = search.candidates(c)
    assert [int(x.config.seed) for x in cands] == [0, 1, 2] and c.search.ensemble == 3
    assert {int(x.config.data.split_seed) for x in cands} == {0}


@pytest.mark.parametrize(
    "candidate, metric, error",
    [
        ("data.extra_train_path=x.jsonl", "val_loss", "kept candidates are one ensemble, runs of"),
        ("model.conditioning=discriminative", "val_accuracy", "do not mix with a classification"),
    ],
)
def test_an_ensemble_search_refuses_candidates_that_cannot_be_averaged(
    files, tmp_path, candidate, metric, error
):
    """What --mode=eval --workdirs would refuse after the training (another task, posteriors
    among log-likelihoods) is refused before it."""
    config = search_config(tmp_path, files, candidates=(candidate,), ensemble=2)
    config.train.best_metric = metric
    with pytest.raises(RunError, match=error) as e:
        search.candidates(config)
    assert "\n" not in str(e.value)
