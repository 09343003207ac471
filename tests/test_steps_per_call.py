"""`train.steps_per_call` (several optimizer updates per call of the jitted step, a lax.scan):
the calls the host forms, and runs that equal steps_per_call=1 bit for bit (the per-step
losses, validation and checkpoint steps, params, predictions), through a resume and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import IMDB_DIR, REPO, TOKENIZER_DIR, in_parallel
from test_train import (
    assert_trees,
    base_config,
    batches_fn,
    make_epochs,
    model_config,
    tiny_params,
    train,
)

from gencls_jax.runs.checkpoint import Checkpointer
from gencls_jax.training import loop as T


def _batch(i: int, T_: int) -> dict:
    return {"inputs": np.full((2, T_), i, np.int32), "labels": np.full(2, i, np.int32)}


def test_calls_keep_order_and_cut_at_shapes_checkpoints_and_the_end():
    lengths = [8, 8, 8, 16, 16, 8, 8, 8, 8, 8]
    batches = [_batch(i, t) for i, t in enumerate(lengths)]
    # 2 steps taken before; the loop holds the state after steps 5 and 10 (checkpoints)
    calls = list(T._host_calls(iter(batches), 4, 2, lambda s: s % 5 == 0))
    # by hand: steps 3-5 (cut at 5), 6-7 (the shape changes), 8-10 (cut at 10), 11-12 (end)
    assert [n for _, n in calls] == [3, 2, 3, 2]
    got = []
    for call, n in calls:
        live = call["live"]
        assert live.tolist() == [True] * n + [False] * (4 - n)
        assert call["batch"]["inputs"].shape[0] == 4 and call["batch"]["labels"].shape == (4, 2)
        got += [int(call["batch"]["inputs"][j, 0, 0]) for j in range(n)]
        assert not call["batch"]["inputs"][n:].any()  # the slots after them: zeros
    assert got == list(range(10))  # every batch once, in order, none padded to another length
    assert all(
        c["batch"]["inputs"].shape[-1] == lengths[i]
        for c, i in zip([c for c, _ in calls], [0, 3, 5, 8])
    )
    plain = list(T._host_calls(iter(batches), 1, 2, lambda s: True))
    assert [n for _, n in plain] == [None] * 10 and all(a is b for (a, _), b in zip(plain, batches))


def _mixed(data):
    """Batches of two row lengths (8 at batches 3 and 4 of each epoch, else 16): calls are cut
    where the shape changes, so the runs below make calls of 1, 2 and 3 updates."""
    cut = [
        {k: v[..., : 8 if i in (3, 4) else 16] for k, v in b.items()}
        for ep in data
        for i, b in enumerate(ep)
    ]
    return [cut[i : i + len(data[0])] for i in range(0, len(cut), len(data[0]))]


def _run(mode, per_call, d, callbacks=(), **over):
    classes = 2 if mode == "per_class" else None
    config = base_config(
        epochs=2, ckpt_every=3, keep_checkpoints=50, steps_per_call=per_call, **over
    )
    config.model.conditioning = mode
    mc = model_config(config, dropout=0.1)  # dropout on: its keys must follow the step
    data = _mixed(make_epochs(2, 7, 8, classes=classes, seed=3))  # 7 steps an epoch
    fake = iter([3.0, 2.0])
    return train(
        config,
        d,
        mc,
        tiny_params(mc, classes),
        batches_fn(data),
        7,
        lambda p: {"val_loss": next(fake)},
        callbacks=callbacks,
    )


def _same(a, b, da, db):
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert [h["step"] for h in a.history] == [h["step"] for h in b.history]
    assert a.evals == b.evals and (a.best_step, a.step) == (b.best_step, b.step)
    assert_trees(np.testing.assert_array_equal, a.state.params, b.state.params)  # bit-identical
    assert_trees(np.testing.assert_array_equal, a.state.opt_state, b.state.opt_state)
    steps = [Checkpointer(d / "checkpoints", 50, "").all_steps() for d in (da, db)]
    assert steps[0] == steps[1] == [3, 6, 7, 9, 12, 14], steps


def test_four_updates_per_call_equal_one(tmp_path, mode="per_class"):
    """K stacked class models; epochs of 7 steps (not a multiple of 4), two row lengths,
    checkpoints every 3 steps (the label_prefix decision recipe: the end-to-end test below)."""
    one = _run(mode, 1, tmp_path / "one")
    four = _run(mode, 4, tmp_path / "four")
    _same(one, four, tmp_path / "one", tmp_path / "four")

    # and the interrupted run, resumed, with 4 updates per call: the signal comes while step
    # 2's metrics are handled (the call of steps 1-3 is recorded after the call of steps 4-5
    # is dispatched): it stops after that call, saved at step 5
    def interrupt(step, _rec):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    part = _run(mode, 4, tmp_path / "part", callbacks=[interrupt])
    assert part.stop_reason == "interrupted" and part.step == 5, (part.stop_reason, part.step)
    rest = _run(mode, 4, tmp_path / "part")
    assert [h["loss"] for h in part.history + rest.history] == [h["loss"] for h in one.history]
    assert_trees(np.testing.assert_array_equal, one.state.params, rest.state.params)


# run.py with SIGINT sent to itself once step N's metrics are logged (deterministic Ctrl-C)
HOOKED = """
import os, runpy, signal, sys
sys.path.insert(0, {repo!r})
from gencls_jax.training import hooks
real = hooks.StepLog.record
def record(self, done, *args, **kw):
    out = real(self, done, *args, **kw)
    if done == int(os.environ.get("SIGINT_AT_STEP", "0")):
        os.kill(os.getpid(), signal.SIGINT)
    return out
hooks.StepLog.record = record
sys.argv = ["run.py"] + sys.argv[1:]
runpy.run_path({run!r}, run_name="__main__")
"""

# the label_prefix decision recipe, tiny: 5 steps an epoch (not a multiple of 4), two buckets
DECISION = [
    "--config=" + str(REPO / "configs" / "tiny.py"),
    "--config.compile_cache_dir=",  # cold: every program compiles in the run's process
    "--config.model.conditioning=label_prefix",
    "--config.train.objective=decision",
    "--config.data.batching=bucket",
    "--config.data.long_text=truncate",
    "--config.data.per_class_limit=24",
    "--config.data.val_size=8",
    "--config.data.max_len=64",
    "--config.data.compact_vocab=256",  # not the subject; the 50,257-id head is most of a step
    "--config.data.bucket_lengths=(32,64)",
    "--config.train.epochs=2",
    "--config.train.ckpt_every=3",
    "--config.train.log_every=1",
    "--config.train.plot=False",
    "--config.eval.test_per_class=8",
    "--config.eval.sample_per_class=4",
    "--config.eval.train_sample_per_class=4",
    "--config.progress_bars=False",
    "--config.data.tokenizer=" + str(TOKENIZER_DIR),
    "--config.data.train_path=" + str(IMDB_DIR / "train.jsonl.gz"),
    "--config.data.test_path=" + str(IMDB_DIR / "test.jsonl.gz"),
]


def _cli(wd, per_call, sigint_at=0):
    script = HOOKED.format(repo=str(REPO), run=str(REPO / "run.py"))
    cmd = [sys.executable, "-c", script, *DECISION, f"--workdir={wd}"]
    cmd.append(f"--config.train.steps_per_call={per_call}")
    env = {**os.environ, "SIGINT_AT_STEP": str(sigint_at)}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def _lines(wd, name):
    return [json.loads(x) for x in (wd / name).read_text().splitlines()]


def test_decision_recipe_interrupted_with_four_per_call_equals_one(tmp_path):
    """Run end to end: steps_per_call=4, Ctrl-C after step 2 (exit 130), resumed, equals
    steps_per_call=1 uninterrupted: every logged loss and validation figure at the same steps,
    the same predictions; the compilations after the first step are counted."""
    if not (IMDB_DIR / "train.jsonl.gz").exists():
        pytest.skip("needs ../shared/data")
    one, four = tmp_path / "one", tmp_path / "four"

    def reference():
        p = _cli(one, 1)
        assert p.returncode == 0, p.stderr[-3000:]

    def interrupted_and_resumed():
        p = _cli(four, 4, sigint_at=2)
        assert p.returncode == 130, p.stderr[-3000:]
        assert (four / "checkpoints").exists() and not (four / "predictions_test.jsonl").exists()
        p = _cli(four, 4)
        assert p.returncode == 0, p.stderr[-3000:]

    in_parallel(reference, interrupted_and_resumed)
    for name in ("predictions_test.jsonl", "predictions_val.jsonl"):
        assert _lines(one, name) == _lines(four, name)
    logged = [
        [
            {k: v for k, v in r.items() if not k.endswith("_per_s")}
            for r in _lines(wd, "metrics.jsonl")
        ]
        for wd in (one, four)
    ]
    assert logged[0] == logged[1] and len(logged[0]) >= 10
    validated = [r for r in logged[0] if "val_accuracy" in r]  # each epoch's validation
    assert validated and all(r["val_decision_loss"] > 0 for r in validated)
    # each program compiles when its shape first comes: in the uninterrupted run, the first
    # validation pass's scoring (and any other bucket's step) after the first step, counted late
    # (the resumed run's first call validates the finished epoch 0 before its first step)
    train = json.loads((one / "train_summary.json").read_text())["phases"]["train"]
    assert train["late_compiles"] > 0 and train["late_compile_s"] > 0
    assert train["first_step_s"] >= train["before_first_step_s"] > 0
    phases = json.loads((four / "train_summary.json").read_text())["phases"]
    # every stretch of the command's wall time is in a phase: model init and row layout too
    assert {"data", "model", "train", "score"} <= set(phases), phases
    assert phases["model"]["wall_s"] > 0


def test_eight_devices_with_four_per_call_match_one_device(tmp_path):
    """The stacked axis is not split: 8 emulated devices, 4 updates per call (rows split over
    'data', grad accumulation, per_class and label_prefix) equal 1 device, 1 update per call."""
    import test_train

    test_train.assert_eight_devices_match_one(__file__, tmp_path)


if __name__ == "__main__":  # test_train's device run, with 4 updates per call
    import test_train

    plain = test_train.base_config
    test_train.base_config = lambda **kw: plain(steps_per_call=4, **kw)
    test_train.run_for_devices(sys.argv[1])
