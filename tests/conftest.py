"""Shared fixtures: a tiny random Hugging Face GPT-2 saved to disk, a tiny run trained by run.py
on a few IMDB reviews, and the ../shared paths. In CI every test must run: there a skip (no
../shared/data, no torch) is a failure."""

import atexit
import concurrent.futures
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GENCLS_SHARED", REPO.parent / "shared"))
TOKENIZER_DIR = SHARED / "data" / "gpt2-tokenizer"
IMDB_DIR = SHARED / "data" / "imdb"

TINY_HF = dict(vocab_size=1000, n_positions=64, n_embd=64, n_layer=2, n_head=4)

# One compilation cache for the whole session: the runs of different test files train the same
# tiny shapes, so a program compiled once is read by every later run (a cache hit returns the
# same executable; tests that need a cold cache pass their own). The pytest process itself uses
# it too, for the steps and scorers tests build in-process.
XLA_CACHE = Path(tempfile.mkdtemp(prefix="gencls_test_xla_"))
atexit.register(shutil.rmtree, XLA_CACHE, ignore_errors=True)
XLA_ARGS = [f"--config.compile_cache_dir={XLA_CACHE}", "--config.compile_cache_min_secs=0"]


def pytest_configure(config):
    import jax

    jax.config.update("jax_compilation_cache_dir", str(XLA_CACHE))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


@pytest.fixture(scope="session")
def hf_tiny_dir(tmp_path_factory):
    """A random transformers.GPT2LMHeadModel (2 layers, width 64), saved as safetensors."""
    torch = pytest.importorskip("torch")
    import transformers

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(**TINY_HF, bos_token_id=999, eos_token_id=999)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # non-trivial LayerNorm and bias values, so a swapped tensor shows
        for name, p in model.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("hf_tiny")
    model.save_pretrained(folder)
    return folder


def imdb_train(per_class: int) -> list[dict]:
    """The first `per_class` reviews of each label of IMDB's training file, ids tr0, tr1, ..."""
    rows: dict[int, list[dict]] = {0: [], 1: []}
    with gzip.open(IMDB_DIR / "train.jsonl.gz", "rt") as f:
        for line in f:
            r = json.loads(line)
            if len(rows[r["label"]]) < per_class:
                rows[r["label"]].append(r)
            if all(len(v) == per_class for v in rows.values()):
                break
    return [
        {"id": f"tr{i}", "label": r["label"], "text": r["text"]}
        for i, r in enumerate(rows[0] + rows[1])
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_cli(*args, stdin: str | None = None, cwd: Path = REPO, program=None):
    """The command (run.py unless `program`), its output as text."""
    cmd = [sys.executable, *(program or [str(REPO / "run.py")]), *args]
    return subprocess.run(
        cmd,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def in_parallel(*jobs: Callable[[], Any]) -> list:
    """Each job's result, in order, the jobs run at the same time (each in a thread that waits on
    its own subprocesses): a tiny run keeps about one core busy, and CI has two. The first
    job's error is raised once every job has ended."""
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        futures = [pool.submit(job) for job in jobs]
        concurrent.futures.wait(futures)
        return [f.result() for f in futures]


def tiny_run_args(folder: Path) -> list[str]:
    """configs/tiny.py on folder's train.jsonl and test.jsonl, 4 of the training texts held out
    for validation, 2 epochs at a high learning rate (the class models differ), no report
    samples or plots. Later commands read the run's config: they share the programs compiled
    into the session's XLA_CACHE, and the tokens cached in folder/tok_cache."""
    return [
        "--config=" + str(REPO / "configs" / "tiny.py"),
        f"--config.data.train_path={folder / 'train.jsonl'}",
        f"--config.data.test_path={folder / 'test.jsonl'}",
        f"--config.data.cache_dir={folder / 'tok_cache'}",
        "--config.data.per_class_limit=0",
        "--config.data.val_size=4",
        "--config.eval.test_per_class=0",
        "--config.eval.sample_per_class=0",
        "--config.eval.train_sample_per_class=0",
        "--config.train.lr=0.03",
        "--config.train.epochs=2",
        "--config.train.tensorboard=False",
        "--config.train.plot=False",
        "--config.progress_bars=False",
        *XLA_ARGS,
    ]


TINY_RUN_PER_CLASS = 12
# Two short texts that fit the 128-token rows (the reviews are truncated).
SHORT = {"s1": "A wonderful film, I loved it.", "s2": "Dreadful."}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A tiny per_class run (tiny_run_args) on 12 IMDB reviews of each class, trained and
    evaluated by run.py; its test texts are 4 of each class's training reviews (the class
    models have seen them: the predictions differ) and SHORT. test_predict.py predicts on it,
    test_ensemble.py makes it an ensemble's first member. Its tests only add to the workdir's
    history.jsonl."""
    if not (IMDB_DIR / "train.jsonl.gz").exists() or not TOKENIZER_DIR.exists():
        pytest.skip("needs ../shared/data")
    folder = tmp_path_factory.mktemp("tiny_run")
    train = imdb_train(TINY_RUN_PER_CLASS)
    n = TINY_RUN_PER_CLASS
    test = train[:4] + train[n : n + 4]
    test += [{"id": k, "label": i % 2, "text": t} for i, (k, t) in enumerate(SHORT.items())]
    write_jsonl(folder / "train.jsonl", train)
    write_jsonl(folder / "test.jsonl", test)
    p = run_cli(*tiny_run_args(folder), f"--workdir={folder / 'run'}")
    assert p.returncode == 0, p.stderr[-3000:]
    return dict(folder=folder, workdir=folder / "run", test=test)


def damage_checkpoint(step_dir: Path) -> None:
    """Every data file of a checkpoint step cut in half: which OCDBT file holds the params (vs.
    the optimizer state) depends on the writer threads, so the largest alone may leave them
    intact for a params-only restore."""
    for p in step_dir.rglob("*"):
        if p.is_file() and p.stat().st_size > 1024:
            p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


# CI runs every test: `.ci/run` sets CI=true (as GitHub Actions and GitLab CI do), and there a
# test that would skip fails instead, with its reason. A local run without ../shared skips them.
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")


def _skip_is_failure(report) -> None:
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"skipped in CI (CI={os.environ['CI']}), where every test must run: {reason}"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _skip_is_failure(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield  # a module-level importorskip
    _skip_is_failure(outcome.get_result())
