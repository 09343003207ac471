"""Checkpoints: the best step is the one restored (in this process, a fresh one, after a resume),
and a damaged checkpoint is reported in one line and skipped, never deleted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gencls_jax.config_keys import defaults as base_config  # noqa: E402
from gencls_jax.errors import RunError  # noqa: E402
from gencls_jax.model import gpt2 as M  # noqa: E402
from gencls_jax.runs import load  # noqa: E402
from gencls_jax.runs.checkpoint import Checkpointer  # noqa: E402
from gencls_jax.training import loop as T  # noqa: E402
from tests.conftest import damage_checkpoint  # noqa: E402

VOCAB, SEQ, STEPS_PER_EPOCH = 64, 16, 2


def config(epochs: int, **train):
    c = base_config()
    c.model.size, c.model.dtype, c.model.dropout, c.model.conditioning = (
        "tiny",
        "float32",
        0.0,
        "label_prefix",
    )
    t = c.train
    t.epochs, t.batch_size, t.lr, t.warmup_steps, t.schedule = epochs, 4, 3e-3, 0, "constant"
    t.log_every, t.ckpt_every, t.plot, t.tensorboard = 1, 0, False, False
    t.ckpt_every_s = 0.0  # every checkpoint point saves: these tests count checkpoints by step
    c.progress_bars = False
    t.keep_checkpoints, t.best_metric = 1, "val_loss"
    for k, v in train.items():
        setattr(t, k, v)
    return c


def model_config(c):
    return M.resolve_config(M.config_for("tiny", vocab_size=VOCAB, n_positions=SEQ), c.model)


def stream(epoch: int, start: int):
    """The epoch's batches (random tokens, a pure function of the epoch) from `start` on."""
    rng = np.random.default_rng(epoch)
    out = []
    for _ in range(STEPS_PER_EPOCH):
        x = rng.integers(0, VOCAB, size=(4, SEQ + 1)).astype(np.int32)
        out.append(
            {
                "inputs": x[:, :-1],
                "targets": x[:, 1:],
                "weights": np.ones((4, SEQ), np.float32),
                "positions": np.broadcast_to(np.arange(SEQ, dtype=np.int32), (4, SEQ)).copy(),
                "segment_ids": np.ones((4, SEQ), np.int32),
            }
        )
    return iter(out[start:])


class FakeValidation:
    """Validation losses in a given order (best at epoch 1), and a copy of the params it saw."""

    def __init__(self, losses):
        self.losses, self.seen = list(losses), []

    def __call__(self, params):
        self.seen.append(jax.tree_util.tree_map(np.array, jax.device_get(params)))
        return {"val_loss": self.losses[len(self.seen) - 1]}


def assert_same_params(a, b):
    jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(a), b)


def test_best_checkpoint_is_restored_in_a_fresh_process_and_after_a_resume(tmp_path):
    losses = [3.0, 1.0, 2.0, 2.5]  # best at epoch 1 = step 4
    mc = model_config(config(4))
    init = M.init_params(mc, seed=0)

    # Uninterrupted, then restored here and in a new process.
    val = FakeValidation(losses)
    res = T.train(
        config(4), tmp_path / "full", mc, init, stream, STEPS_PER_EPOCH, val, stacked=False
    )
    assert (res.best, res.best_step) == (1.0, 4)
    params, step, _ = load.restore_params(tmp_path / "full", init, "best")
    assert step == 4
    assert_same_params(params, val.seen[1])
    code = (
        "import sys; sys.path.insert(0, %r); from gencls_jax.model import gpt2 as model;"
        "from gencls_jax.runs import load;"
        "from tests.test_checkpoint import config, model_config;"
        "p, s, _ = load.restore_params(%r, model.init_params(model_config(config(4))), 'best');"
        " print('STEP', s)" % (str(REPO), str(tmp_path / "full"))
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert "STEP 4" in out.stdout, out.stderr[-2000:]

    # Two epochs, then the run continued to four (a new checkpoint manager): with one latest
    # checkpoint kept, only the metric on disk keeps step 4 alive and restorable as the best.
    val2 = FakeValidation(losses)
    T.train(config(2), tmp_path / "resumed", mc, init, stream, STEPS_PER_EPOCH, val2, stacked=False)
    T.train(config(4), tmp_path / "resumed", mc, init, stream, STEPS_PER_EPOCH, val2, stacked=False)
    assert Checkpointer(tmp_path / "resumed" / "checkpoints", 1, "val_loss").all_steps() == [4, 8]
    params, step, _ = load.restore_params(tmp_path / "resumed", init, "best")
    assert step == 4
    assert_same_params(params, val2.seen[1])
    params, step, _ = load.restore_params(tmp_path / "resumed", init, "latest")
    assert step == 8


def test_damaged_latest_checkpoint_is_skipped_with_one_line_and_kept(tmp_path, caplog):
    c = config(2, ckpt_every=1, keep_checkpoints=3, best_metric="")
    mc = model_config(c)
    init = M.init_params(mc, seed=0)
    # checkpoints at steps 2, 3, 4
    T.train(c, tmp_path, mc, init, stream, STEPS_PER_EPOCH, stacked=False)
    ckpt_dir = tmp_path / "checkpoints"
    assert Checkpointer(ckpt_dir, 3, "").all_steps() == [2, 3, 4]
    damage_checkpoint(ckpt_dir / "4")

    # Evaluation reads the newest intact step and leaves the damaged one where it is.
    caplog.clear()
    params, step, fallback = load.restore_params(tmp_path, init, "latest")
    assert step == 3
    # the sentence the run's summary shows
    assert (
        fallback
        == f"checkpoint step 3 was used instead of the damaged step 4 (kept at {ckpt_dir / '4'})"
    )
    warned = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert warned and "checkpoint step 4 is damaged" in warned[0] and "\n" not in warned[0]
    assert (ckpt_dir / "4").is_dir()

    # Training resumes from step 3; the damaged step is moved aside, not deleted or overwritten.
    c4 = config(2, ckpt_every=1, keep_checkpoints=3, best_metric="")
    res = T.train(c4, tmp_path, mc, init, stream, STEPS_PER_EPOCH, stacked=False)
    assert (
        res.stop_reason == "completed" and res.step == 4 and [h["step"] for h in res.history] == [4]
    )
    assert (tmp_path / "checkpoints_damaged" / "4").is_dir()
    assert res.fallback == (
        "checkpoint step 3 was used instead of the damaged step 4 "
        f"(kept at {tmp_path / 'checkpoints_damaged' / '4'})"
    )
    assert Checkpointer(ckpt_dir, 3, "").latest_step() == 4  # a new, intact step 4


def test_no_intact_checkpoint_is_one_line_error(tmp_path):
    c = config(1, keep_checkpoints=1, best_metric="")
    mc = model_config(c)
    init = M.init_params(mc, seed=0)
    T.train(c, tmp_path, mc, init, stream, STEPS_PER_EPOCH, stacked=False)
    damage_checkpoint(tmp_path / "checkpoints" / "2")
    with pytest.raises(RunError, match=r"no checkpoint restores; tried step 2 \("):
        load.restore_params(tmp_path, init, "best")


def test_resuming_with_another_process_count_is_a_run_error(tmp_path):
    """The command line prints a RunError in one line (a ValueError was a traceback)."""
    c = config(1, keep_checkpoints=1, best_metric="")
    mc = model_config(c)
    init = M.init_params(mc, seed=0)
    T.train(c, tmp_path, mc, init, stream, STEPS_PER_EPOCH, stacked=False)
    meta = tmp_path / "checkpoints" / "2" / "meta" / "metadata"
    meta.write_text(meta.read_text().replace('"process_count": 1', '"process_count": 2'))
    with pytest.raises(RunError, match=r"trained by 2 process\(es\); resume it with the"):
        T.train(c, tmp_path, mc, init, stream, STEPS_PER_EPOCH, stacked=False)


def test_a_tie_for_best_is_one_step_for_the_tracker_and_the_restore(tmp_path):
    """Found on the GPU: two epochs tied for the best validation accuracy; the report named the
    first as best and orbax restored the second. Now both are the later one."""
    c = config(4, best_metric="val_accuracy", keep_checkpoints=1)
    mc = model_config(c)
    init = M.init_params(mc, seed=0)
    val = FakeValidationAccuracy([0.72, 0.86, 0.86, 0.84])
    res = T.train(c, tmp_path, mc, init, stream, STEPS_PER_EPOCH, val, stacked=False)
    params, step, _ = load.restore_params(tmp_path, init, "best")
    assert res.best_step == step == 6
    assert_same_params(params, val.seen[2])


class FakeValidationAccuracy(FakeValidation):
    def __call__(self, params):
        return {"val_accuracy": super().__call__(params)["val_loss"]}


def test_checkpoints_without_the_tracked_metric_warn_once(tmp_path, caplog):
    """Mid-epoch checkpoints carry no metric by design: orbax's "Requested `tracked_metric`"
    warning at each of them (4 here) is dropped. Validation metrics that lack
    train.best_metric are said once, for the whole run."""
    c = config(2, ckpt_every=1, keep_checkpoints=3, best_metric="val_accuracy")
    mc = model_config(c)
    caplog.clear()
    T.train(
        c,
        tmp_path,
        mc,
        M.init_params(mc, seed=0),
        stream,
        STEPS_PER_EPOCH,
        FakeValidation([2.0, 1.0]),
        stacked=False,
    )
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "tracked_metric" in m]
    assert [m for m in messages if "best_metric" in m] == [
        "train.best_metric='val_accuracy' is not among the validation metrics (val_loss): no "
        "checkpoint is ranked, the best one is the latest"
    ]


def test_a_checkpoint_from_before_a_state_field_was_added_still_resumes(tmp_path):
    """Checkpoints written before TrainState had `average` (a NamedTuple of six fields, saved
    as it was) restore into today's state with the field off, every value as written."""
    from typing import Any, NamedTuple

    import orbax.checkpoint as ocp

    from gencls_jax.training import step as TS

    class OldState(NamedTuple):  # TrainState before train.ema_decay
        step: Any
        params: Any
        opt_state: Any
        loss_scale: Any
        skipped: Any
        rng: Any

    rng = np.random.default_rng(0)
    old = OldState(
        np.int32(7),
        {"w": rng.normal(size=(3, 2)).astype(np.float32)},
        {"mu": rng.normal(size=(3, 2)).astype(np.float32)},
        np.float32(1.0),
        np.int32(0),
        np.arange(2, dtype=np.uint32),
    )
    ckpt = Checkpointer(tmp_path, keep=1, best_metric="", async_save=False)
    ckpt.manager.save(
        7,
        args=ocp.args.Composite(
            state=ocp.args.PyTreeSave(old), meta=ocp.args.JsonSave({"epoch": 1})
        ),
        force=True,
    )
    ckpt.manager.wait_until_finished()
    like = TS.TrainState(*(jax.tree_util.tree_map(np.zeros_like, x) for x in old))
    state, meta, step, fallback = ckpt.restore(like)
    ckpt.close()
    assert (step, meta, fallback, state.average) == (7, {"epoch": 1}, None, None)
    for got, want in zip(state[:6], old):
        jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(got), want)
