"""--mode=eval --workdirs: an ensemble of two tiny runs of one task (conftest's per_class tiny run
and a label_prefix run with a compact vocabulary on its files), against the members' own eval
output: the ensemble's log-likelihoods are the float64 mean of theirs, an ensemble of one is the
run's own eval, predict on the ensemble is its eval, other tasks are refused."""

import json
import shutil

import numpy as np
import pytest
from conftest import run_cli, tiny_run_args
from test_predict import LL_TOL

from gencls_jax.classifier import EnsembleClassifier, GenerativeClassifier
from gencls_jax.commands import ensemble, evaluate
from gencls_jax.data.sources import Dataset
from gencls_jax.errors import DataError, RunError
from gencls_jax.runs import rules
from gencls_jax.system.fileio import read_jsonl

pytestmark = pytest.mark.usefixtures("members")

# the second member: another conditioning, model of other ids (a compact vocabulary)
OTHER = ("--config.model.conditioning=label_prefix", "--config.data.compact_vocab=300")


@pytest.fixture(scope="module")
def members(tiny_run, tmp_path_factory):
    """A: conftest's tiny run; B: the same task and settings but OTHER, trained and evaluated by
    run.py; E: the ensemble of both, evaluated by run.py. "test": their test file."""
    folder = tmp_path_factory.mktemp("ensemble")
    a, b, e = tiny_run["workdir"], folder / "B", folder / "E"
    p = run_cli(*tiny_run_args(tiny_run["folder"]), f"--workdir={b}", *OTHER)
    assert p.returncode == 0, p.stderr[-3000:]
    p = run_cli("--mode=eval", f"--workdirs={a},{b}", f"--workdir={e}")
    assert p.returncode == 0, p.stderr[-3000:]
    return {"A": a, "B": b, "E": e, "test": tiny_run["folder"] / "test.jsonl"}


def _lls(path) -> tuple[list, np.ndarray]:
    rows = read_jsonl(path)
    return [r["id"] for r in rows], np.array([r["log_likelihoods"] for r in rows], np.float64)


@pytest.mark.parametrize("split", ["val", "test"])
def test_ensemble_scores_are_the_mean_of_the_members_evals(members, split):
    """Each member scored through its own eval path: the ensemble's log-likelihoods are the
    float64 mean of the members' predictions_<split>.jsonl, its Bayes decisions the argmax of
    that mean plus the prior, and metrics.json lists each member with its own accuracy."""
    ids_a, a = _lls(members["A"] / f"predictions_{split}.jsonl")
    ids_b, b = _lls(members["B"] / f"predictions_{split}.jsonl")
    ids_e, e = _lls(members["E"] / f"predictions_{split}.jsonl")
    assert ids_a == ids_b == ids_e
    assert not np.allclose(a, b), "the two members score alike: the mean shows nothing"
    np.testing.assert_allclose(e, (a + b) / 2, **LL_TOL)
    metrics = json.loads((members["E"] / "metrics.json").read_text())
    prior = np.array(metrics["prior"])
    labels = np.array([r["label"] for r in read_jsonl(members["E"] / f"predictions_{split}.jsonl")])
    reference = float(np.mean(((a + b) / 2 + prior).argmax(1) == labels))
    assert metrics["results"][split]["bayes"]["accuracy"] == pytest.approx(reference)
    for m, name in zip(metrics["ensemble"]["members"], "AB"):
        own = json.loads((members[name] / "metrics.json").read_text())
        assert m["own_accuracy"][split] == own["results"][split]["bayes"]["accuracy"]
    assert metrics["ensemble"]["texts"][split]["used"] == len(ids_a)


def test_an_ensemble_of_one_is_the_runs_own_eval(members, tmp_path):
    """The same accuracy, decisions, log-likelihoods, fitted temperatures, OOD threshold and
    n-gram expert as the run's own --mode=eval (a copy of run A whose config asks for the
    n-gram expert, evaluated by itself first)."""
    run = tmp_path / "A_ngram"
    shutil.copytree(members["A"], run)
    config = json.loads((run / "config.json").read_text())
    config["eval"]["ngram_weights"] = [0.0, 0.5, 2.0]
    (run / "config.json").write_text(json.dumps(config))
    evaluate.evaluate(rules.saved_config(run), run)
    out = ensemble.evaluate_ensemble([str(run)], tmp_path / "one")
    own = json.loads((run / "metrics.json").read_text())
    mine = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert own["ngram"]["grid"] == [0.0, 0.5, 2.0] and mine["ngram"] == own["ngram"]
    assert out["accuracy"] == own["accuracy"]
    assert mine["results"] == own["results"]
    assert mine["calibration"]["temperatures"] == pytest.approx(
        own["calibration"]["temperatures"], rel=1e-6
    )
    assert mine["ood"]["threshold"] == pytest.approx(own["ood"]["threshold"], rel=1e-6)
    for split in ("val", "test"):
        ref = read_jsonl(run / f"predictions_{split}.jsonl")
        got = read_jsonl(tmp_path / "one" / f"predictions_{split}.jsonl")
        assert [r["prediction"] for r in got] == [r["prediction"] for r in ref]
        np.testing.assert_allclose(
            [r["log_likelihoods"] for r in got], [r["log_likelihoods"] for r in ref], **LL_TOL
        )


def test_predict_on_the_ensemble_is_its_eval(members, tmp_path):
    """`--mode=predict --workdir=E` on the test texts: the ensemble's eval decisions,
    log-likelihoods, top posteriors (at its temperature) and OOD scores."""
    clf = GenerativeClassifier.load(members["E"])
    assert isinstance(clf, EnsembleClassifier) and len(clf.members) == 2
    p = run_cli(
        "--mode=predict",
        f"--workdir={members['E']}",
        f"--input={members['test']}",
        f"--output={tmp_path / 'p.jsonl'}",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    got = read_jsonl(tmp_path / "p.jsonl")
    ref = read_jsonl(members["E"] / "predictions_test.jsonl")
    names = ["neg", "pos"]
    assert [r["prediction"] for r in got] == [names[r["prediction"]] for r in ref]
    ll = [[r["log_likelihoods"][n] for n in names] for r in got]
    np.testing.assert_allclose(ll, [r["log_likelihoods"] for r in ref], **LL_TOL)
    conf = [max(r["posteriors"].values()) for r in got]
    np.testing.assert_allclose(conf, [r["confidence"] for r in ref], rtol=1e-5)
    np.testing.assert_allclose(
        [r["ood_score"] for r in got], [r["ood_score"] for r in ref], rtol=1e-6
    )


def _copy(src, dst, edit) -> str:
    """A copy of a run's config.json and run_info.json (no checkpoints: refused before loading)
    with `edit(config, info)` applied."""
    dst.mkdir()
    config = json.loads((src / "config.json").read_text())
    info = json.loads((src / "run_info.json").read_text())
    edit(config, info)
    (dst / "config.json").write_text(json.dumps(config))
    (dst / "run_info.json").write_text(json.dumps(info))
    return str(dst)


def test_members_of_another_task_are_refused(members, tmp_path):
    """Other label names, another test file: one line naming the difference."""
    a = str(members["A"])
    names = _copy(members["A"], tmp_path / "names", lambda c, i: i.update(label_names=["x", "y"]))
    other = tmp_path / "other_test.jsonl"
    shutil.copy(members["test"], other)
    test = _copy(
        members["A"], tmp_path / "test", lambda c, i: c["data"].update(test_path=str(other))
    )
    for member, what in ((names, "label names ['neg', 'pos'] vs ['x', 'y']"), (test, "test_path")):
        with pytest.raises(RunError, match=r"is not a run of .*'s task") as e:
            ensemble.evaluate_ensemble([a, member], tmp_path / "out")
        assert what in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(RunError, match="already holds config.json"):
        ensemble.evaluate_ensemble([a], members["E"])


def test_members_without_common_validation_texts_are_refused(members, tmp_path):
    """Seeds 0 and 1 hold out disjoint validation texts here (2 of 12 per class each): no text
    that neither trained on, so nothing to fit on honestly."""
    seed1 = _copy(members["B"], tmp_path / "seed1", lambda c, i: c.update(seed=1))
    with pytest.raises(DataError, match="no validation text in common"):
        ensemble.evaluate_ensemble([str(members["A"]), seed1], tmp_path / "out")


def test_common_rows_match_texts_by_id_and_text():
    """Rows of the texts every member has, in the first member's order."""

    def ds(ids, texts):
        n = len(ids)
        return Dataset(list(texts), np.zeros(n, np.int32), list(ids), np.full(n, "real"), ("a",))

    first = ds(["1", "2", "3", "4"], "abcd")
    second = ds(["4", "3", "1", "2"], "dcaX")  # id 2 holds another text: not common
    rows = ensemble.common_rows([first, second])
    assert [r.tolist() for r in rows] == [[0, 2, 3], [2, 1, 0]]


def test_a_missing_member_folder_is_one_line(members, tmp_path):
    p = run_cli(
        "--mode=eval",
        f"--workdirs={members['A']},{tmp_path / 'nope'}",
        f"--workdir={tmp_path / 'out'}",
    )
    assert p.returncode == 1
    assert p.stderr.strip() == f"error: --workdirs: no such folder: {tmp_path / 'nope'}"


def test_the_end_of_an_ensemble_eval_suggests_only_what_it_takes():
    """An ensemble is predicted with; eval and explain on its folder are refused, so the summary
    after an ensemble eval names predict, and explain on a member."""
    from gencls_jax.reports.summary import end_of_run

    m = {"n": 4, "accuracy": 0.75, "per_class": {"neg": {"f1": 0.8}, "pos": {"f1": 0.7}}}
    out = {"results": {"test": {"bayes": m}}}
    ens = end_of_run("runs/ens", out, "bayes", members=("runs/a", "runs/b"))
    assert "--mode=predict --workdir=runs/ens" in ens and "--workdir=runs/a" in ens
    assert "--mode=eval --workdir=runs/ens" not in ens
    assert "--mode=explain --workdir=runs/ens" not in ens
    one = end_of_run("runs/a", out, "bayes")
    assert "--mode=eval --workdir=runs/a" in one and "--mode=explain --workdir=runs/a" in one
