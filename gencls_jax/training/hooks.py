"""What happens around each step and each epoch of the training loop (`training/loop.py`).

- `StepLog`: the host side of each finished step, fetched one step late (while the next step
  runs, so the host never waits for the device in between): the per-step history, windowed
  metrics in metrics.jsonl and TensorBoard, the log line, the progress bar.
- `Checkpoints`: the run's checkpoints: the resume (damaged steps set aside, another process
  count refused), when to save, the save itself.
- `track_best`: the best validation value, its step, and early stopping.
- `StopOnSignal`: SIGINT/SIGTERM stop the run after the step in flight, saved.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
from absl import logging

from gencls_jax.errors import RunError
from gencls_jax.reports import logs, progress
from gencls_jax.runs.checkpoint import Checkpointer, RestoreError, metric_mode

# the objectives' additive statistics, summed over the models on the host
SUMMED = ("nll", "weight", "tokens", "ce", "texts", "correct")
LOGGED = ("train_loss", "decision_loss", "train_accuracy", "lr", "tokens_per_s", "steps_per_s")


class Throughput:
    """Tokens/s and steps/s over the window since the last `rates()` call."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.t0, self.tokens, self.steps = time.perf_counter(), 0.0, 0

    def add(self, tokens: float) -> None:
        self.tokens += tokens
        self.steps += 1

    def rates(self, reset: bool = True) -> dict[str, float]:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        out = {"tokens_per_s": self.tokens / dt, "steps_per_s": self.steps / dt}
        if reset:
            self.reset()
        return out


class StepLog:
    """Per-step records (`history`, exact), metrics averaged over `train.log_every` steps
    (metrics.jsonl, TensorBoard, the log line), per-epoch validation figures (`evals`) and the
    epoch's progress bar. `objective` turns summed statistics into the logged loss."""

    def __init__(self, workdir: Path, config: Any, objective, use_scale: bool, lead: bool):
        tc = config.train
        self.writer = logs.MetricsWriter(workdir, tensorboard=tc.tensorboard, enabled=lead)
        self.objective, self.use_scale, self.log_every = objective, use_scale, int(tc.log_every)
        self.bars = lead and bool(config.progress_bars)
        self.history: list[dict] = []
        self.evals: list[dict] = []
        self.window: dict[str, float] = {}
        self.speed = Throughput()
        self.bar = progress.progress_bar(0, 0, 0, enabled=False)
        self.callbacks: Sequence[Callable[[int, dict], None]] = ()

    def loss(self, sums: Mapping[str, float]) -> float:
        """The objective's loss of summed statistics (its denominators from the sums too), in
        float32 numpy: on the host, not queued behind the step in flight."""
        out = self.objective.losses({k: np.float32(sums.get(k, 0.0)) for k in SUMMED}, xp=np)
        return float(np.asarray(out).reshape(-1)[0])

    def start_epoch(self, total: int, start: int, epoch: int) -> None:
        self.bar = progress.progress_bar(total, start, epoch, self.bars)

    def end_epoch(self) -> None:
        self.bar.close()  # (left open if a step raised: the traceback matters more)

    def record(self, done: int, batch: int, metrics_on_device: dict, epoch: int) -> dict:
        """Host side of a finished step: fetch its metrics, log, run the callbacks."""
        m = jax.device_get(metrics_on_device)
        sums = {k: float(np.sum(m[k])) for k in SUMMED if k in m}
        finite = bool(np.all(m["finite"]))
        if not finite and not self.use_scale:
            raise FloatingPointError(
                f"non-finite loss at step {done} (epoch {epoch}, batch {batch}): sums {sums}"
            )
        real = np.atleast_1d(m["real"])  # class models that took this step (others: padding)

        def of_real(x) -> float:
            return float(np.mean(np.atleast_1d(x)[real])) if real.any() else 0.0

        rec = {
            "step": done,
            "loss": self.loss(sums),
            "lr": of_real(m["lr"]),
            "grad_norm": of_real(m["grad_norm"]),
            "tokens": sums["tokens"],
            "finite": finite,
        }
        if self.use_scale:
            rec["loss_scale"] = float(np.min(m["loss_scale"]))
        self.history.append(rec)
        if finite:
            for k, v in sums.items():
                self.window[k] = self.window.get(k, 0.0) + v
        self.speed.add(sums["tokens"])
        self.bar.update(1)
        if done % self.log_every == 0:
            self.write_window(done, rec, int(np.sum(m["skipped"])))
        for cb in self.callbacks:
            cb(done, rec)
        return rec

    def write_window(self, done: int, rec: dict, skipped: int) -> None:
        logged = {
            "train_loss": self.loss(self.window),
            "lr": rec["lr"],
            "grad_norm": rec["grad_norm"],
            "skipped_steps": skipped,
            **self.speed.rates(),
            **self.objective.log_terms(self.window),
        }
        if self.use_scale:
            logged["loss_scale"] = rec["loss_scale"]
        self.window = {}
        self.writer.write(done, "train", logged)
        progress.log_line(done, logged, (*LOGGED, "skipped_steps"))
        self.bar.set_postfix(
            loss=f"{logged['train_loss']:.4f}",
            tok_s=f"{logged['tokens_per_s']:.0f}",
            it_s=f"{logged['steps_per_s']:.2f}",
        )

    def validation(self, step: int, epoch: int, ev: Mapping[str, float]) -> None:
        if ev:
            self.evals.append({"step": step, "epoch": epoch, **ev})
            self.writer.write(step, "eval", {"epoch": epoch, **ev})
            progress.log_line(step, ev, sorted(ev))

    def plot(self, png: Path) -> None:
        """curves.png: the losses (and validation accuracy) against the step."""
        logs.plot_curves(self.writer.path, png)


class Checkpoints:
    """The run's checkpoints (`train.keep_checkpoints` latest + the best by
    `train.best_metric`): the resume, when to save, the save.

    When: at the points `due` names (every `train.ckpt_every` steps, each epoch's end), but not
    within `train.ckpt_every_s` seconds of the last save (`recent`), except a save the run
    needs: its new best (the checkpoint restored as best must exist) and where it stops (the end,
    early stopping, max_steps, a signal). A save copies the whole train state (GPT-2 with AdamW:
    ~2 GB) and writes it in the background; on the H200 a small set's run saved every ~5 s and
    waited 1-3 s for the previous write to finish, once or twice a run. A crash loses at most
    `ckpt_every_s` seconds and an epoch; a resumed run replays them exactly (the data order and
    dropout keys are functions of the step), so skipping a save changes no result."""

    def __init__(self, workdir: Path, tc: Any):
        if not float(tc.ckpt_every_s) >= 0:  # before the manager: nothing to close, no folder
            raise RunError(f"train.ckpt_every_s must be >= 0 seconds, got {tc.ckpt_every_s}")
        self.tc = tc
        self.ckpt = Checkpointer(
            workdir / "checkpoints", tc.keep_checkpoints, tc.best_metric, tc.async_checkpoint
        )
        self.last_save = time.monotonic()  # the run's start: the first save after an interval

    def resume(self, state, meta: dict, workdir: Path) -> tuple[Any, dict, str | None]:
        """(state, meta, the damaged checkpoints skipped or None) of the latest checkpoint, or
        the fresh ones when there is none."""
        if self.ckpt.latest_step() is None:
            return state, meta, None
        try:
            state, meta, _, fallback = self.ckpt.restore(state, "latest", set_aside_damaged=True)
        except RestoreError as e:  # every checkpoint damaged: each is moved aside, none deleted
            self.ckpt.close()
            raise RunError(
                f"{e}; they are kept in {self.ckpt.directory}_damaged, and the same command "
                "again trains this run from step 0"
            ) from None
        if meta.get("process_count", 1) != jax.process_count():
            self.ckpt.close()
            raise RunError(
                f"{workdir} was trained by {meta.get('process_count', 1)} process(es); resume "
                f"it with the same number (this run has {jax.process_count()})"
            )
        logging.info(
            "resumed from step %d (epoch %d, batch %d) in %s",
            int(state.step),
            meta["epoch"],
            meta["batch"],
            workdir,
        )
        return state, meta, fallback

    def due(self, step: int, last_of_epoch: bool) -> bool:
        """Every `train.ckpt_every` steps (the epoch's end saves anyway, with its metrics)."""
        every = int(self.tc.ckpt_every)
        return every > 0 and step % every == 0 and not last_of_epoch

    def recent(self) -> bool:
        """A save less than `train.ckpt_every_s` seconds ago (0: never recent, every `due`
        point saves)."""
        every = float(self.tc.ckpt_every_s)
        return every > 0 and time.monotonic() - self.last_save < every

    def save(self, step: int, state, meta: dict, metrics: dict | None = None) -> None:
        self.ckpt.save(step, state, dict(meta), metrics)
        self.last_save = time.monotonic()

    def close(self) -> None:
        self.ckpt.close()  # waits for async saves: the latest checkpoint is complete on exit


def track_best(meta: dict, ev: Mapping[str, float], step: int, tc: Any) -> bool:
    """Update the best value / patience counter in `meta`; True when early stopping is due.

    A tie with the best value moves the best step to the later checkpoint, as orbax's
    `best_step()` and its BestN retention do (the step restored as best and the one reported
    must be one step), but only a strict improvement resets the patience counter."""
    if tc.best_metric not in ev:
        return False
    value, best = ev[tc.best_metric], meta["best"]
    better = best is None or (
        value < best if metric_mode(tc.best_metric) == "min" else value > best
    )
    if better or value == best:
        meta.update(best=value, best_step=step)
    if better:
        meta["bad_epochs"] = 0
    else:
        meta["bad_epochs"] = int(meta["bad_epochs"]) + 1
    if tc.early_stop_patience > 0 and meta["bad_epochs"] >= tc.early_stop_patience:
        logging.info(
            "early stopping: %s did not improve for %d epochs", tc.best_metric, meta["bad_epochs"]
        )
        return True
    return False


class StopOnSignal:
    """SIGINT/SIGTERM set a flag; the loop finishes its step, checkpoints and returns.
    A second signal raises KeyboardInterrupt at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._old: dict = {}

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        logging.warning(
            "received signal %d: stopping after this step and saving a checkpoint", signum
        )

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
