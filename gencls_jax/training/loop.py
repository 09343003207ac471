"""The training loop: a short loop over epochs and steps, with its hooks (`training/hooks.py`).

The pure step is `training/step.py`; what it minimises, `training/objectives.py`; this module
is the host side around them (as levanter's trainer keeps logging, evaluation and checkpoints
as hooks around a loop that knows nothing of the loss). Step n's metrics are fetched after
step n+1 is dispatched, so the host never waits for the device between steps; a SIGINT/SIGTERM
stops after the step in flight and checkpoints. With `train.steps_per_call` S > 1 a call of the
jitted step is up to S updates (`_host_calls`: consecutive batches of one shape, cut at every
checkpoint step and the epoch's end), each logged as its own step.
Per class (stacked models), an epoch has max_k n_k steps; class k's n_k batches come first, then
padding (`data.batching`).

Entry point: `train(config, workdir, model_config, init_params, train_batches, num_batches,
eval_fn, stacked=..., objective=...)`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh

from gencls_jax.data.prefetch import prefetch_to_device
from gencls_jax.model.gpt2 import GPT2Config
from gencls_jax.reports.phases import compile_counts
from gencls_jax.system import fileio, sharding
from gencls_jax.training import hooks, objectives, optim
from gencls_jax.training import step as ts

Batch = Mapping[str, Any]


# --- validation loss --------------------------------------------------------------------------


def make_loss_evaluator(
    config: Any,
    model_config: GPT2Config,
    val_batches: Callable[[], Iterable[Batch]],
    *,
    stacked: bool,
    mesh: Mesh | None = None,
) -> Callable[[Any], dict[str, float]]:
    """An `eval_fn` for `train`: params -> {'val_loss': the token-mean LM loss over
    `val_batches()`, every class model's texts together}."""
    step = ts.make_eval_step(model_config, objectives.lm_objective(config, stacked))
    mesh = mesh or sharding.make_mesh(int(config.train.class_shards) if stacked else 1)

    def evaluate(params) -> dict[str, float]:
        # no host sync in between the batches
        sums = jax.device_get([step(params, sharding.shard_batch(b, mesh)) for b in val_batches()])
        nll = sum(float(np.sum(s["nll"])) for s in sums)
        weight = sum(float(np.sum(s["weight"])) for s in sums)
        return {"val_loss": nll / max(weight, 1e-30)}

    return evaluate


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
    # where compiling stalled this call: first_step_s (from the call to the first step's
    # return: every stall before it; of it before_first_step_s came before the step's first
    # call: state, resume, first batch), late_compiles, late_compile_s (compilations after the
    # first step: each shape compiles when it first comes, e.g. another bucket's step, the first
    # validation pass)
    compiling: dict = dataclasses.field(default_factory=dict)

    @property
    def params(self) -> Any:
        """The parameters the run ships (`step.shipped_params`: the moving average when on)."""
        return ts.shipped_params(self.state)

    def outcome(self) -> dict:
        """How the call ended, as the run's summaries record it."""
        return dict(
            stop_reason=self.stop_reason,
            signal=self.signal,
            steps=self.step,
            epochs_done=self.epoch,
            best=self.best,
            best_step=self.best_step,
        )


def _steps_per_model(n: int | Sequence[int]) -> tuple[int, ...]:
    """num_batches(epoch) as a tuple: one count per class model, or one for every model."""
    return (int(n),) if np.ndim(n) == 0 else tuple(int(x) for x in n)


def run_epochs(tc: Any, num_batches: Callable[[int], int | Sequence[int]]) -> int:
    """`train.epochs`, raised so that the run takes at least `train.min_steps` steps: one recipe
    for every data size (500 texts per class get as many updates as it takes, not 3 epochs' 360)."""
    per_epoch = max(max(_steps_per_model(num_batches(0))), 1)
    return max(int(tc.epochs), math.ceil(int(tc.min_steps) / per_epoch))


def total_steps(tc: Any, num_batches: Callable[[int], int | Sequence[int]]) -> tuple[int, ...]:
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


@dataclasses.dataclass
class _Run:
    """What the loop carries from call to call."""

    state: ts.TrainState
    meta: dict  # where the data stands (epoch, batch) and the best-checkpoint bookkeeping
    step: int
    # (first step, its batch index, device metrics, updates or None: one unstacked step) of the
    # call in flight
    pending: tuple | None = None


def _epoch(run: _Run, step_fn, calls, epoch: int, start: int, total: int, tc, log, ckpts, stop):
    """One epoch's steps from batch `start` on, in calls of one or more updates
    (`_host_calls`); returns why the run stops, or None."""
    reason, i = None, start
    for call, n in calls:
        run.state, metrics = step_fn(run.state, call)
        first, run.step, i = run.step + 1, run.step + (n or 1), i + (n or 1)
        run.meta.update(epoch=epoch, batch=i)
        if run.pending is not None:
            _record(log, run.pending, epoch)  # waits for the previous call only
        run.pending = (first, i - (n or 1), metrics, n)
        if tc.max_steps > 0 and run.step >= tc.max_steps:
            reason = "max_steps"
        elif stop.signum is not None:
            reason = "interrupted"  # the call in flight when the signal came is kept
        if reason is not None or ckpts.due(run.step, last_of_epoch=i >= total):
            _record(log, run.pending, epoch)
            run.pending = None
            if reason is not None or not ckpts.recent():
                ckpts.save(run.step, run.state, run.meta)
        if reason is not None:
            break
    calls.close()  # stops the prefetching thread
    if run.pending is not None:
        _record(log, run.pending, epoch)
        run.pending = None
    log.end_epoch()
    return reason


def _record(log, pending: tuple, epoch: int) -> None:
    """The host side of a finished call: each of its updates logged as its own step."""
    first, index, metrics, n = pending
    if n is None:
        log.record(first, index, metrics, epoch)
        return
    m = jax.device_get(metrics)  # one transfer for the call's n updates
    for j in range(n):
        log.record(first + j, index + j, {k: v[j] for k, v in m.items()}, epoch)


def _host_calls(
    batches: Iterable[Batch], per_call: int, step: int, cut_after: Callable[[int], bool]
) -> Iterator[tuple[Batch, int | None]]:
    """(host call, its updates) for the loop: with `per_call` = 1 each batch as it is (None);
    else runs of consecutive batches of one shape, at most `per_call`, stacked by `_stack`.
    Batches are never reordered nor padded to a longer row (each update is the one
    steps_per_call=1 takes), and a call ends after any step `cut_after(step)` (checkpoint,
    max_steps: the loop must hold the state there) and at the epoch's end. `step`: the
    optimizer steps taken before the first batch."""
    group: list[Batch] = []
    for b in batches:
        if per_call == 1:
            yield b, None
            continue
        if group and _shapes(b) != _shapes(group[0]):
            yield _stack(group, per_call), len(group)
            group = []
        group.append(b)
        step += 1
        if len(group) == per_call or cut_after(step):
            yield _stack(group, per_call), len(group)
            group = []
    if group:
        yield _stack(group, per_call), len(group)


def _shapes(batch: Batch) -> dict:
    return {k: np.shape(v) for k, v in batch.items()}


def _stack(group: Sequence[Batch], per_call: int) -> dict:
    """`ts.scan_steps`' call: the batches stacked on a leading axis of `per_call` slots, the
    slots after them filled with zeros and not `live`."""
    fill = [{k: np.zeros_like(v) for k, v in group[0].items()}] * (per_call - len(group))
    slots = [*group, *fill]
    live = np.arange(per_call) < len(group)
    return {"batch": {k: np.stack([b[k] for b in slots]) for k in group[0]}, "live": live}


def _compiled(config, model_config, init_params, nb, stacked: bool, objective):
    """(mesh, K or None, epochs, the jitted step, the fresh state on the devices): what the loop
    runs, each model's schedule over its own updates of the whole run."""
    tc = config.train
    k = ts.num_stacked_classes(init_params) if stacked else None
    mesh = sharding.make_mesh(int(tc.class_shards) if stacked else 1)
    if stacked and k % mesh.shape["class"]:
        raise ValueError(f"train.class_shards={tc.class_shards} must divide the {k} class models")
    epochs, totals = run_epochs(tc, nb), total_steps(tc, nb)
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
    frozen = ml_collections.FrozenConfigDict(tc)
    tx, step_fn = ts.compiled_train_step(model_config, frozen, stacked, totals, mesh, objective)
    return mesh, k, epochs, step_fn, _fresh_state(init_params, tx, tc, int(config.seed), k, mesh)


def _fresh_state(init_params, tx, tc, seed: int, k, mesh) -> ts.TrainState:
    """The fresh train state, made on the devices in its shardings by one jitted program: op by
    op, each leaf's copy and each optimizer-state zero was its own small compilation (dozens on
    a GPU, none of them big enough for the persistent cache, so every run paid them again). Its
    arrays are new (the step donates the state; the caller's `init_params` stay valid)."""

    def make(params):
        return ts.init_state(params, tx, tc, seed, k)

    shape = jax.eval_shape(make, init_params)
    out = sharding.state_shardings(mesh, shape, k is not None, bool(tc.fsdp))
    return jax.jit(make, out_shardings=out)(init_params)


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
    objective: objectives.Objective | None = None,
    callbacks: Sequence[Callable[[int, dict], None]] = (),
) -> TrainResult:
    """Train (or resume training in `workdir`) and return the final state.

    train_batches(epoch, start) yields the host batches of `epoch` from batch index `start` on
    (one batch = one optimizer step: `train.batch_size` rows; [K, B, T] for K `stacked` class
    models or the decision's K slices, [B, T] for one model); num_batches(epoch) says how many
    steps each model takes in it: an int, or for stacked models a tuple of K counts
    (`PerClassStream.steps_per_model`: class k's real batches come first, then padding). The
    epoch has the largest count; each model's schedule runs over its own total. `objective`:
    what a step minimises (default: the LM for `data.batching`'s rows). eval_fn(params) ->
    metrics (e.g. val_loss, val_accuracy) runs at each epoch end; callbacks(step, record) after
    every step (hooks for tests and tooling)."""
    t0, objective = time.perf_counter(), objective or objectives.lm_objective(config, stacked)
    tc, workdir = config.train, Path(workdir)
    nb = num_batches if callable(num_batches) else (lambda _e, n=int(num_batches): n)
    lead = jax.process_index() == 0
    workdir.mkdir(parents=True, exist_ok=True)
    if lead:
        fileio.write_text(workdir / "config.json", config.to_json_best_effort(indent=2))
    mesh, k, epochs, step_fn, state = _compiled(
        config, model_config, init_params, nb, stacked, objective
    )
    meta = dict(epoch=0, batch=0, best=None, best_step=None, bad_epochs=0, stop_reason=None)
    meta["process_count"] = jax.process_count()
    ckpts = hooks.Checkpoints(workdir, tc)
    state, meta, fallback = ckpts.resume(state, meta, workdir)
    log = hooks.StepLog(workdir, config, objective, model_config.dtype == "float16", lead)
    log.callbacks = callbacks
    log.writer.drop_after(int(state.step))  # rows past the restored step are trained again
    run, reason = _Run(state, meta, int(state.step)), meta.get("stop_reason")

    per_call = ts.steps_per_call(tc)
    put = functools.partial(_put, stacked=stacked, k=k, accum=int(tc.grad_accum), mesh=mesh)

    def cut_after(step: int) -> bool:  # the loop holds the state after these steps
        return ckpts.due(step, last_of_epoch=False) or step == tc.max_steps

    first = _FirstStep(step_fn, t0)
    try:
        with hooks.StopOnSignal() as stop:
            epoch = int(meta["epoch"])
            while reason is None and epoch < epochs:
                if tc.max_steps > 0 and run.step >= tc.max_steps:
                    reason = "max_steps"
                    break
                start = int(meta["batch"]) if epoch == int(meta["epoch"]) else 0
                total = max(_steps_per_model(nb(epoch)))
                log.start_epoch(total, start, epoch)
                calls = _host_calls(train_batches(epoch, start), per_call, run.step, cut_after)
                calls = prefetch_to_device(calls, config.data.prefetch, lambda c: (put(c[0]), c[1]))
                reason = _epoch(run, first, calls, epoch, start, total, tc, log, ckpts, stop)
                if reason is not None:
                    break
                # Epoch end: evaluate, track the best, maybe stop early, checkpoint (always at a new
                # best and where the run stops, else not within train.ckpt_every_s: `Checkpoints`)
                epoch += 1
                meta.update(epoch=epoch, batch=0)
                ev = {
                    m: float(v)
                    for m, v in (eval_fn(ts.shipped_params(run.state)) if eval_fn else {}).items()
                }
                log.validation(run.step, epoch - 1, ev)
                if hooks.track_best(meta, ev, run.step, tc):
                    reason = meta["stop_reason"] = "early_stop"
                stops = reason is not None or epoch >= epochs or 0 < tc.max_steps <= run.step
                if stops or meta["best_step"] == run.step or not ckpts.recent():
                    ckpts.save(run.step, run.state, meta, ev or None)
            reason = reason or "completed"
    finally:
        ckpts.close()
        log.writer.close()
    if lead and tc.plot:
        log.plot(workdir / "curves.png")
    return TrainResult(
        run.state,
        reason,
        int(meta["epoch"]),
        run.step,
        meta["best"],
        meta["best_step"],
        log.history,
        log.evals,
        stop.signum if reason == "interrupted" else None,
        fallback,
        first.finish(),
    )


def _put(batch: Batch, stacked: bool, k: int | None, accum: int, mesh: Mesh) -> dict:
    """A host batch (or `_stack`'s call) on the devices; shape errors here, with a message, not
    deep inside XLA. A call's stacked axis is not split: each device holds its rows of every
    update."""
    n = mesh.shape["data"]
    one = batch if "live" not in batch else {key: v[0] for key, v in batch["batch"].items()}
    ts.check_batch(one, stacked=stacked, num_classes=k, accum=accum, n_devices=n)
    if "live" not in batch:
        return sharding.shard_batch(batch, mesh)
    live = sharding.put_replicated(mesh, batch["live"])
    return {"batch": sharding.shard_batch(batch["batch"], mesh, steps=True), "live": live}


class _FirstStep:
    """The train step, noting when its first call returned (every stall before the first step:
    `compiling['first_step_s']`) and the XLA compilations done by then (`compiles`)."""

    def __init__(self, step_fn, t0: float):
        self.step_fn, self.t0, self.compiling, self.compiles = step_fn, t0, {}, None

    def __call__(self, state, batch):
        if self.compiles is None:  # set-up, resume, the first batch: before the step's compile
            self.compiling["before_first_step_s"] = time.perf_counter() - self.t0
        out = self.step_fn(state, batch)
        if self.compiles is None:
            self.compiles = compile_counts()
            self.compiling["first_step_s"] = time.perf_counter() - self.t0
        return out

    def finish(self) -> dict:
        """`compiling` with 'late_compiles' and 'late_compile_s': XLA compilations and compile
        seconds since the first step (each shape compiles when it first comes: another bucket's
        step, the first validation pass's programs)."""
        if self.compiles is not None:
            now, then = compile_counts(), self.compiles
            self.compiling["late_compiles"] = int(now["compiles"] - then["compiles"])
            self.compiling["late_compile_s"] = now["compile_s"] - then["compile_s"]
        return self.compiling
