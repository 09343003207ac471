"""Compile ahead (`compile_ahead_threads`, training/ahead.py): the shapes enumerated ahead are
every shape the batchers yield, a run compiles nothing after its first step, and its results
are those of a run that compiles each shape when it first comes."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import IMDB_DIR, REPO, TOKENIZER_DIR, in_parallel

from gencls_jax.data import batching
from gencls_jax.data.rows import Rows


def _rows(lengths, seed=0):
    rng = np.random.default_rng(seed)
    ids = [rng.integers(1, 50, n).astype(np.int32) for n in lengths]
    return Rows(ids, ids, [np.ones(n, np.float32) for n in lengths], np.arange(len(lengths)))


def _shapes(batches):
    return {tuple((k, v.shape, v.dtype.str) for k, v in sorted(b.items())) for b in batches}


@pytest.mark.parametrize("scheme", ["bucket", "pad", "pack"])
def test_examples_are_every_shape_the_streams_yield(scheme):
    spec = batching.BatchSpec(scheme, 4, 64, (16, 32, 48))
    a, b = _rows([5, 9, 30, 31, 12, 60, 7]), _rows([3, 20, 25, 33], seed=1)  # b: no 64 bucket
    streams = [
        batching.TrainStream(a, spec, 0),
        batching.PerClassStream(
            (batching.TrainStream(a, spec, 0), batching.TrainStream(b, spec, 1))
        ),
    ]
    if scheme != "pack":
        c = _rows([4, 30, 12, 40], seed=2)
        streams.append(batching.SlicedStream((c, c), np.array([0, 1, 0, 1]), spec, 0))
    for s in streams:
        seen = _shapes(x for e in range(4) for x in s.batches(e))
        ahead = _shapes(s.examples())
        assert seen <= ahead, (type(s).__name__, seen - ahead)
        if not isinstance(s, batching.PerClassStream):  # (K classes: a superset, see examples)
            assert seen == ahead


def test_scoring_shapes_are_the_scoring_batches_shapes():
    rows = _rows([5, 9, 30, 31, 12, 60, 7, 8, 8, 8, 8, 8])
    for multiple in (1, 2):
        got = batching.scoring_shapes(rows, 3, (16, 32, 48), 64, multiple)
        want = {
            b["inputs"].shape
            for _, b in batching.scoring_batches(rows, 3, (16, 32, 48), 64, multiple)
        }
        assert sorted(got) == sorted(want)
    assert batching.scoring_shapes(_rows([]), 3, (16,), 64) == []


SMALL = [
    "--config=" + str(REPO / "configs" / "tiny.py"),
    "--config.compile_cache_dir=",  # cold: every program compiles in this process
    "--config.data.per_class_limit=16",
    "--config.data.val_size=8",
    "--config.data.max_len=64",
    "--config.data.compact_vocab=256",  # not the subject; the 50,257-id head is most of a step
    "--config.data.bucket_lengths=(32,64)",
    "--config.eval.test_per_class=8",
    "--config.eval.sample_per_class=4",
    "--config.eval.train_sample_per_class=4",
    "--config.train.plot=False",
    "--config.train.log_every=1",
    "--config.progress_bars=False",
    "--config.data.tokenizer=" + str(TOKENIZER_DIR),
    "--config.data.train_path=" + str(IMDB_DIR / "train.jsonl.gz"),
    "--config.data.test_path=" + str(IMDB_DIR / "test.jsonl.gz"),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same run with compile-ahead off and on, each in a fresh process (both at once)."""
    if not (IMDB_DIR / "train.jsonl.gz").exists():
        pytest.skip("needs ../shared/data")

    def run(threads):
        wd = tmp_path_factory.mktemp(f"ahead{threads}")
        cmd = [sys.executable, str(REPO / "run.py"), *SMALL, f"--workdir={wd}"]
        cmd.append(f"--config.compile_ahead_threads={threads}")
        p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, p.stderr[-3000:]
        return wd

    return dict(zip((0, 2), in_parallel(lambda: run(0), lambda: run(2))))


def _phases(wd):
    return json.loads((wd / "train_summary.json").read_text())["phases"]


def test_nothing_compiles_after_the_first_step_with_compile_ahead(runs):
    off, on = _phases(runs[0]), _phases(runs[2])
    # off: the second bucket's step and the validation pass's scoring compile later (the count
    # sees them); on: every one was compiled before the first step, test scoring's too
    assert off["train"]["late_compiles"] > 0
    assert "programs" not in off["train"]
    assert on["train"]["late_compiles"] == 0 and on["score"]["compiles"] == 0
    # the steps and the scoring's (validation's LM loss is read from its scores: no programs)
    assert on["train"]["programs"] >= 3 and on["train"]["threads"] == 2


def test_compile_ahead_changes_no_result(runs):
    def lines(wd, name):
        return [json.loads(x) for x in (wd / name).read_text().splitlines()]

    for name in ("predictions_test.jsonl", "predictions_val.jsonl"):
        assert lines(runs[0], name) == lines(runs[2], name)  # log-likelihoods, predictions
    losses = [
        [
            (r["step"], r.get("train_loss"), r.get("val_loss"), r.get("val_accuracy"))
            + (r.get("val_decision_loss"),)
            for r in lines(wd, "metrics.jsonl")
        ]
        for wd in (runs[0], runs[2])
    ]
    assert losses[0] == losses[1] and len(losses[0]) > 2
    validated = [r for r in losses[0] if r[3] is not None]  # each epoch's validation
    assert validated and all(r[4] > 0 for r in validated)


def test_compiling_ahead_turns_xla_command_buffers_off():
    """Ahead runs start XLA without command buffers (their cuDNN graph capture failed cold runs
    on the H200); runs without it, and a user's own setting of the flag, are left alone."""
    from configs import base
    from gencls_jax.system import runtime

    c = base.get_config()
    c.compile_ahead_threads = -1
    assert runtime.xla_flags("", c) == "--xla_gpu_enable_command_buffer="
    assert runtime.xla_flags("--xla_dump_to=/d", c) == (
        "--xla_dump_to=/d --xla_gpu_enable_command_buffer="
    )
    own = "--xla_gpu_enable_command_buffer=FUSION"
    assert runtime.xla_flags(own, c) == own
    c.compile_ahead_threads = 0
    assert runtime.xla_flags("--xla_dump_to=/d", c) == "--xla_dump_to=/d"


COUNTS_SCRIPT = """
import json, sys
import jax, jax.numpy as jnp
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
from gencls_jax.reports.phases import compile_counts
f = lambda x: jnp.tanh(x @ x.T).sum()
x = jnp.ones((64, 64))
before = compile_counts()
jax.jit(f)(x).block_until_ready()
cold = compile_counts()
jax.jit(lambda x: f(x))(x).block_until_ready()  # another jit object: traced again, same program
print(json.dumps([before, cold, compile_counts()]))
"""


def test_compile_counts_split_trace_lower_xla_and_the_cache(tmp_path):
    """`phases.compile_counts` (each phase's compile figures in train_summary.json): the total
    is trace + lower + XLA, a first compilation is a persistent-cache miss, the same program
    again from another jit is a hit whose read is counted. Its own process: the cache
    directory is process-wide state."""
    p = subprocess.run(
        [sys.executable, "-c", COUNTS_SCRIPT, str(tmp_path / "cache")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    before, cold, warm = json.loads(p.stdout.strip().splitlines()[-1])
    d1 = {k: cold[k] - before[k] for k in cold}
    d2 = {k: warm[k] - cold[k] for k in warm}
    for d in (d1, d2):
        assert d["compiles"] == 1, d
        assert d["trace_s"] > 0 and d["lower_s"] > 0 and d["xla_s"] > 0, d
        np.testing.assert_allclose(d["compile_s"], d["trace_s"] + d["lower_s"] + d["xla_s"])
    assert (d1["cache_misses"], d1["cache_hits"], d1["cache_read_s"]) == (1, 0, 0), d1
    assert (d2["cache_misses"], d2["cache_hits"]) == (0, 1), d2
    assert 0 < d2["cache_read_s"] <= d2["xla_s"], d2
