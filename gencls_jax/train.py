"""The training loop: epochs, checkpoints, metrics, validation, signals.

The pure step and its helpers are in `train_step.py`; this module is the host side around it
(as nanodo keeps `do_step` apart from metric handling). The loop fetches step n's metrics
after dispatching step n+1, so the host never waits for the device between steps; a
SIGINT/SIGTERM stops after the step in flight and checkpoints. Per class (stacked models), an
epoch has max_k n_k steps; class k's n_k batches come first, then padding (`data.batching`).

Entry point:
`train(config, workdir, model_config, init_params, train_batches, num_batches, stacked=...)`.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh

from gencls_jax import fileio, optim, sharding
from gencls_jax import metrics as metrics_lib
from gencls_jax import train_step as ts
from gencls_jax.checkpoint import Checkpointer, RestoreError, metric_mode
from gencls_jax.data.prefetch import prefetch_to_device
from gencls_jax.model import GPT2Config
from gencls_jax.objectives import JointObjective, LossFn, lm_loss_fn, loss_fn_for
from gencls_jax.workdir import RunError

Batch = Mapping[str, Any]
# Step metrics summed over the class axis on the host: name in the record <- name in the step.
SUMMED = {
    "nll": "nll_sum",
    "weight": "weight",
    "tokens": "tokens",
    "ce": "ce",
    "texts": "texts",
    "correct": "correct",
}


# --- validation loss --------------------------------------------------------------------------


def evaluate_loss(
    eval_step: Callable, params: Any, batches: Iterable[Batch], mesh: Mesh
) -> dict[str, float]:
    """Token-mean validation loss over all batches (and all classes when stacked)."""
    # no host sync in between the batches
    sums = [eval_step(params, sharding.shard_batch(b, mesh)) for b in batches]
    sums = jax.device_get(sums)
    nll, weight = sum(float(np.sum(n)) for n, _ in sums), sum(float(np.sum(w)) for _, w in sums)
    return {"val_loss": nll / max(weight, 1e-30)}


def make_loss_evaluator(
    config: Any,
    model_config: GPT2Config,
    val_batches: Callable[[], Iterable[Batch]],
    *,
    stacked: bool,
    mesh: Mesh | None = None,
) -> Callable[[Any], dict[str, float]]:
    """An `eval_fn` for `train`: params -> {'val_loss': ...} over `val_batches()`."""
    step = ts.make_eval_step(model_config, stacked, lm_loss_fn(config))
    mesh = mesh or sharding.make_mesh(int(config.train.class_shards) if stacked else 1)
    return lambda params: evaluate_loss(step, params, val_batches(), mesh)


# --- the loop -------------------------------------------------------------------------------


@dataclasses.dataclass
class TrainResult:
    state: ts.TrainState
    stop_reason: str  # completed | early_stop | max_steps | interrupted
    epoch: int  # epoch of the next batch
    step: int
    best: float | None  # best value of train.best_metric
    best_step: int | None
    history: list[dict]  # this call's per-step {'step', 'loss', 'lr', ...} (exact, not windowed)
    evals: list[dict]  # this call's per-epoch eval metrics
    signal: int | None = None  # the signal that interrupted the run (SIGINT, SIGTERM)
    fallback: str | None = None  # damaged checkpoints skipped when resuming (for the summary)

    @property
    def params(self) -> Any:
        return self.state.params


class _StopOnSignal:
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


def _steps_per_model(n: int | Sequence[int]) -> tuple[int, ...]:
    """num_batches(epoch) as a tuple: one count per class model, or one for every model."""
    return (int(n),) if np.ndim(n) == 0 else tuple(int(x) for x in n)


def run_epochs(tc: Any, num_batches: Callable[[int], int | Sequence[int]]) -> int:
    """`train.epochs`, raised so that the run takes at least `train.min_steps` steps: one recipe
    for every data size (500 texts per class get as many updates as it takes, not 3 epochs' 360)."""
    per_epoch = max(max(_steps_per_model(num_batches(0))), 1)
    return max(int(tc.epochs), math.ceil(int(tc.min_steps) / per_epoch))


def _total_steps(tc: Any, num_batches: Callable[[int], int | Sequence[int]]) -> tuple[int, ...]:
    """Optimizer updates of each model over the run: its real steps of every epoch, cut where
    `max_steps` ends the run (an epoch's steps are its largest count; a model's come first)."""
    left = int(tc.max_steps) if tc.max_steps > 0 else None
    totals = None
    for e in range(run_epochs(tc, num_batches)):
        n = _steps_per_model(num_batches(e))
        steps = max(n) if left is None else min(max(n), left)
        done = tuple(min(x, steps) for x in n)
        totals = done if totals is None else tuple(a + b for a, b in zip(totals, done))
        if left is not None:
            left -= steps
    return totals or (0,)


def _track_best(meta: dict, ev: Mapping[str, float], step: int, tc: Any) -> bool:
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


def train(
    config: Any,
    workdir: str | Path,
    model_config: GPT2Config,
    init_params: Any,
    train_batches: Callable[[int, int], Iterable[Batch]],
    num_batches: int | Callable[[int], int | Sequence[int]],
    eval_fn: Callable[[Any], Mapping[str, float]] | None = None,
    *,
    stacked: bool,
    callbacks: Sequence[Callable[[int, dict], None]] = (),
    loss_fn: LossFn | None = None,
) -> TrainResult:
    """Train (or resume training in `workdir`) and return the final state.

    train_batches(epoch, start) yields the host batches of `epoch` from batch index `start` on
    (one batch = one optimizer step: `train.batch_size` rows; [K, B, T] for K `stacked` class
    models, [B, T] for one); num_batches(epoch) says how many steps each model takes in it: an
    int, or for stacked models a tuple of K counts (`PerClassStream.steps_per_model`: class k's
    real batches come first, then padding). The epoch has the largest count of steps; each
    model's schedule runs over its own total (an int means every class model takes every step).
    eval_fn(params) -> metrics (e.g. val_loss, val_accuracy) runs at each epoch end.
    callbacks(step, step_metrics) run after every step (hooks for tests and tooling)."""
    loss_fn = loss_fn or loss_fn_for(config)
    tc, workdir = config.train, Path(workdir)
    nb = num_batches if callable(num_batches) else (lambda _e, n=int(num_batches): n)
    lead = jax.process_index() == 0
    workdir.mkdir(parents=True, exist_ok=True)
    if lead:
        fileio.write_text(workdir / "config.json", config.to_json_best_effort(indent=2))

    k = ts.num_stacked_classes(init_params) if stacked else None
    mesh = sharding.make_mesh(int(tc.class_shards) if stacked else 1)
    if stacked and k % mesh.shape["class"]:
        raise ValueError(f"train.class_shards={tc.class_shards} must divide the {k} class models")
    epochs = run_epochs(tc, nb)
    totals = _total_steps(tc, nb)
    if len(totals) not in (1, k or 1):
        raise ValueError(
            f"num_batches gives {len(totals)} step counts per epoch for {k or 1} model(s)"
        )
    logging.info(
        "%d epochs; optimizer updates per model over the run: %s (warmup %s)",
        epochs,
        list(totals),
        [optim.warmup_length(tc, n) for n in totals],
    )
    tx, _, step_fn = ts.compiled_train_step(
        model_config, ml_collections.FrozenConfigDict(tc), stacked, totals, mesh, loss_fn
    )
    # A copy: the step donates the state, and the caller's `init_params` must stay valid.
    params = jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), init_params)
    state = ts.init_state(params, tx, tc, int(config.seed), k)
    state = jax.device_put(state, sharding.state_shardings(mesh, state, stacked, bool(tc.fsdp)))
    use_scale = model_config.dtype == "float16"

    ckpt = Checkpointer(
        workdir / "checkpoints", tc.keep_checkpoints, tc.best_metric, tc.async_checkpoint
    )
    meta = {
        "epoch": 0,
        "batch": 0,
        "best": None,
        "best_step": None,
        "bad_epochs": 0,
        "stop_reason": None,
        "process_count": jax.process_count(),
    }
    fallback = None
    if ckpt.latest_step() is not None:
        try:
            state, meta, _, fallback = ckpt.restore(state, "latest", set_aside_damaged=True)
        except RestoreError as e:  # every checkpoint damaged: each is moved aside, none deleted
            ckpt.close()
            raise RunError(
                f"{e}; they are kept in {ckpt.directory}_damaged, and the same command again "
                "trains this run from step 0"
            ) from None
        if meta.get("process_count", 1) != jax.process_count():
            ckpt.close()
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
    writer = metrics_lib.MetricsWriter(workdir, tensorboard=tc.tensorboard, enabled=lead)
    writer.drop_after(int(state.step))  # rows past the restored step are trained again
    history: list[dict] = []
    evals: list[dict] = []
    step = int(state.step)
    reason = meta.get("stop_reason")

    def save(metrics: dict | None = None) -> None:
        ckpt.save(step, state, dict(meta), metrics)

    window: dict[str, float] = {}
    joint = isinstance(loss_fn, JointObjective)

    def objective_value(t: dict) -> float:
        """The training loss of summed metrics: the LM's token mean, or the joint objective."""
        lm = t.get("nll", 0.0) / max(t.get("weight", 0.0), 1e-30)
        if not joint:
            return lm
        return loss_fn.lm_coef * lm + loss_fn.ce_coef * t.get("ce", 0.0) / max(
            t.get("texts", 0.0), 1e-30
        )

    speed = metrics_lib.Throughput()

    def record(done: int, i: int, m_device: dict, epoch: int, bar) -> dict:
        """Host side of a finished step: fetch its metrics, log, run callbacks. Called one step
        late (while the next step runs) so that the host never waits for the device in between."""
        nonlocal window
        m = jax.device_get(m_device)
        sums = {k: float(np.sum(m[v])) for k, v in SUMMED.items() if v in m}
        finite = bool(np.all(m["finite"]))
        if not finite and not use_scale:
            raise FloatingPointError(
                f"non-finite loss at step {done} (epoch {epoch}, batch {i}): sums {sums}"
            )
        # class models that took this step (the others had padding only)
        real = np.atleast_1d(m["real"])

        def of_real(x) -> float:
            return float(np.mean(np.atleast_1d(x)[real])) if real.any() else 0.0

        rec = {
            "step": done,
            "loss": objective_value(sums),
            "lr": of_real(m["lr"]),
            "grad_norm": of_real(m["grad_norm"]),
            "tokens": sums["tokens"],
            "finite": finite,
        }
        if use_scale:
            rec["loss_scale"] = float(np.min(m["loss_scale"]))
        history.append(rec)
        if finite:
            for k, v in sums.items():
                window[k] = window.get(k, 0.0) + v
        speed.add(sums["tokens"])
        bar.update(1)
        if done % int(tc.log_every) == 0:
            logged = {
                "train_loss": objective_value(window),
                "lr": rec["lr"],
                "grad_norm": rec["grad_norm"],
                "skipped_steps": int(np.sum(m["skipped"])),
                **speed.rates(),
            }
            if joint:  # the two terms of the objective, and the decisions on the training batches
                logged["lm_loss"] = window["nll"] / max(window["weight"], 1e-30)
                logged["decision_loss"] = window["ce"] / max(window["texts"], 1e-30)
                logged["train_accuracy"] = window["correct"] / max(window["texts"], 1e-30)
            if use_scale:
                logged["loss_scale"] = rec["loss_scale"]
            window = {}
            writer.write(done, "train", logged)
            metrics_lib.log_line(
                done,
                logged,
                (
                    "train_loss",
                    "decision_loss",
                    "train_accuracy",
                    "lr",
                    "tokens_per_s",
                    "steps_per_s",
                    "skipped_steps",
                ),
            )
            bar.set_postfix(
                loss=f"{logged['train_loss']:.4f}",
                tok_s=f"{logged['tokens_per_s']:.0f}",
                it_s=f"{logged['steps_per_s']:.2f}",
            )
        for cb in callbacks:
            cb(done, rec)
        return rec

    try:
        with _StopOnSignal() as stop:
            epoch = int(meta["epoch"])
            while reason is None and epoch < epochs:
                if tc.max_steps > 0 and step >= tc.max_steps:
                    reason = "max_steps"
                    break
                start = int(meta["batch"]) if epoch == int(meta["epoch"]) else 0
                total = max(_steps_per_model(nb(epoch)))
                bar = metrics_lib.progress_bar(total, start, epoch, lead and config.progress_bars)

                def put(batch: Batch) -> dict:
                    # shape errors here, with a message, not deep inside XLA
                    ts.check_batch(
                        batch,
                        stacked=stacked,
                        num_classes=k,
                        sliced=joint,
                        accum=int(tc.grad_accum),
                        n_devices=mesh.shape["data"],
                    )
                    return sharding.shard_batch(batch, mesh)

                batches = prefetch_to_device(
                    train_batches(epoch, start), int(config.data.prefetch), put
                )
                pending = None  # (step, batch index, device metrics) of the step in flight
                for i, batch in enumerate(batches, start):
                    state, m = step_fn(state, batch)
                    step += 1
                    meta.update(epoch=epoch, batch=i + 1)
                    if pending is not None:
                        record(*pending, epoch, bar)  # waits for the previous step only
                    pending = (step, i, m)
                    last_of_epoch = i + 1 >= total
                    if tc.max_steps > 0 and step >= tc.max_steps:
                        reason = "max_steps"
                    elif stop.signum is not None:
                        reason = "interrupted"  # the step in flight when the signal came is kept
                    if reason is not None or (
                        tc.ckpt_every > 0 and step % int(tc.ckpt_every) == 0 and not last_of_epoch
                    ):
                        record(*pending, epoch, bar)
                        pending = None
                        save()
                    if reason is not None:
                        break
                batches.close()  # stops the prefetching thread
                if pending is not None:
                    record(*pending, epoch, bar)
                bar.close()  # (left open if a step raised: the traceback matters more)
                if reason is not None:
                    break
                # Epoch end: evaluate, track the best, maybe stop early, checkpoint.
                epoch += 1
                meta.update(epoch=epoch, batch=0)
                ev = dict(eval_fn(state.params)) if eval_fn is not None else {}
                ev = {kk: float(v) for kk, v in ev.items()}
                if ev:
                    evals.append({"step": step, "epoch": epoch - 1, **ev})
                    writer.write(step, "eval", {"epoch": epoch - 1, **ev})
                    metrics_lib.log_line(step, ev, sorted(ev))
                if _track_best(meta, ev, step, tc):
                    reason = meta["stop_reason"] = "early_stop"
                save(ev or None)
            reason = reason or "completed"
    finally:
        ckpt.close()  # waits for async saves: the latest checkpoint is complete on exit
        writer.close()
    if lead and tc.plot:
        metrics_lib.plot_curves(writer.path, workdir / "curves.png")
    return TrainResult(
        state,
        reason,
        int(meta["epoch"]),
        step,
        meta["best"],
        meta["best_step"],
        history,
        evals,
        stop.signum if reason == "interrupted" else None,
        fallback,
    )
