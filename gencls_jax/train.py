"""The training engine: one jitted, data-parallel train step and the loop around it.

- One step function for both conditionings. `label_prefix` trains one model on [B, T]
  batches; `per_class` trains K models stacked on a leading class axis (params, optimizer
  state, loss scale and the [K, B, T] batch) with `jax.vmap` (or `lax.map`, one class after
  another, when `train.stack_classes=False` and K models' activations don't fit at once).
- Data parallel: a 1-D `Mesh` over all devices with axis 'data'; the batch is sharded on its
  row axis B, the train state is replicated, and XLA inserts the gradient all-reduce.
- Gradient accumulation runs inside the step (`lax.scan` over micro-batches); the loss is
  normalised by the total weight of the whole batch, so A micro-batches of B rows equal one
  batch of A*B rows up to float rounding.
- Dropout keys are fold_in(seed, step, class, micro-batch): resuming replays them exactly.
- float16 (`model.dtype`): dynamic loss scaling; a step with non-finite grads is skipped.
- Unequal class sizes (per_class): each class model trains exactly as if fine-tuned alone on
  its class's texts. It sees its data once per epoch (an epoch has max_k n_k steps; class k's
  n_k batches come first, then padding, see `data.batching`); a step where its batch has no
  real token leaves its params, optimizer state and loss scale untouched; and it follows its
  own learning-rate schedule (warmup + decay, `optim.make_schedule`) over its own number of
  real steps in the run, advanced only by the updates it applies.

Entry point: `train(config, workdir, model_config, init_params, train_batches, num_batches)`.
"""

from __future__ import annotations

import dataclasses
import functools
import signal
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gencls_jax import metrics as metrics_lib
from gencls_jax import optim
from gencls_jax.checkpoint import Checkpointer, metric_mode
from gencls_jax.model import GPT2Config, apply, head_log_probs

Array = jax.Array
Batch = Mapping[str, Any]
LossFn = Callable[[Any, Batch, GPT2Config, Array | None], tuple[Array, Array]]


# --- configuration --------------------------------------------------------------------------


def resolve_model_config(config: Any, base: GPT2Config) -> GPT2Config:
    """`base` (e.g. from the pretrained weights) with the numerics and regularisation of
    `config.model` applied: dtype, remat, attention, dropout, layer unroll, head chunk."""
    m = config.model
    attention = m.attention
    if attention == "auto":  # cuDNN flash attention where there is cuDNN, XLA elsewhere
        attention = "cudnn" if jax.default_backend() == "gpu" else "xla"
    return base.replace(dtype=m.dtype, remat=m.remat, attention=attention, dropout=float(m.dropout),
                        layer_unroll=int(m.get("layer_unroll", 0)), head_chunk=int(m.get("head_chunk", base.head_chunk)))


def setup_compilation_cache(config: Any) -> None:
    """JAX's persistent compilation cache at `config.compile_cache_dir` ('' = off). Process-wide:
    call it once, before the first compilation (run.py does)."""
    path = config.get("compile_cache_dir", "")
    if path:
        jax.config.update("jax_compilation_cache_dir", str(Path(path).expanduser()))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", float(config.get("compile_cache_min_secs", 1.0)))


_DISTRIBUTED_READY = False


def setup_distributed(config: Any) -> None:
    """`jax.distributed.initialize()` when `train.distributed` is set, before the first JAX
    work of the run: `experiment.train_and_evaluate` and `train` call it (a second call is a no-op)."""
    global _DISTRIBUTED_READY
    if config.train.get("distributed", False) and not _DISTRIBUTED_READY:
        jax.distributed.initialize()
        _DISTRIBUTED_READY = True


SINGLE_MODEL_CONDITIONINGS = ("label_prefix", "unconditional")  # one shared LM, [B, T] batches


def is_per_class(config: Any) -> bool:
    """per_class: K stacked models and [K, B, T] batches; the others train one model."""
    known = ("per_class", *SINGLE_MODEL_CONDITIONINGS)
    if config.model.conditioning not in known:
        raise ValueError(f"model.conditioning must be one of {known}, got {config.model.conditioning!r}")
    return config.model.conditioning == "per_class"


# --- state ----------------------------------------------------------------------------------


class TrainState(NamedTuple):
    """Everything a resumed run needs besides the data position. With per-class training every
    field but `step` and `rng` has a leading class axis."""

    step: Array  # int32 scalar: optimizer steps taken (including skipped ones)
    params: Any
    opt_state: Any
    loss_scale: optim.LossScale
    skipped: Array  # int32: steps skipped for non-finite grads (float16 loss scaling)
    rng: Array  # uint32 key data of the dropout base key


def init_state(params: Any, tx: optax.GradientTransformation, tc: Any, seed: int, num_classes: int | None) -> TrainState:
    """Fresh state. `num_classes` = K for class-stacked params, None for one model."""
    if num_classes is None:
        opt_state, ls, skipped = tx.init(params), optim.init_loss_scale(tc), jnp.zeros((), jnp.int32)
    else:
        opt_state = jax.vmap(tx.init)(params)
        ls = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (num_classes,)), optim.init_loss_scale(tc))
        skipped = jnp.zeros((num_classes,), jnp.int32)
    rng = jax.random.key_data(jax.random.key(seed))
    return TrainState(jnp.zeros((), jnp.int32), params, opt_state, ls, skipped, rng)


def num_stacked_classes(params: Any) -> int:
    """K of a class-stacked GPT-2 tree (wte embedding is [K, V, D])."""
    wte = params["wte"]["embedding"]
    if wte.ndim != 3:
        raise ValueError(f"per_class training needs params stacked on a class axis; wte has shape {wte.shape}")
    return int(wte.shape[0])


# --- loss and steps -------------------------------------------------------------------------


def token_loss_sums(params: Any, batch: Batch, model_config: GPT2Config, dropout_rng: Array | None) -> tuple[Array, Array]:
    """(sum of weights * -log p(targets), sum of weights) over a [B, T] batch, float32."""
    hidden = apply(params, batch["inputs"], model_config, batch.get("positions"), batch.get("segment_ids"),
                   dropout_rng=dropout_rng, return_hidden=True)
    w = batch["weights"].astype(jnp.float32)
    targets = jnp.maximum(batch["targets"], 0)  # padding targets may be < 0
    lp = head_log_probs(hidden, params["wte"]["embedding"], targets, model_config)
    return -jnp.sum(w * lp), jnp.sum(w)


def causal_token_loss_sums(params: Any, batch: Batch, model_config: GPT2Config, dropout_rng: Array | None):
    """`token_loss_sums` for right-padded rows (one text per row): the causal mask alone is exact
    for their real tokens, so segment ids are dropped and cuDNN runs its built-in causal kernel."""
    return token_loss_sums(params, {k: v for k, v in batch.items() if k != "segment_ids"}, model_config, dropout_rng)


def loss_fn_for(config: Any) -> LossFn:
    """Packed rows need segment ids; pad/bucket rows do not."""
    return token_loss_sums if config.data.batching == "pack" else causal_token_loss_sums


def _split_micro(x: Array, accum: int) -> Array:
    """[B, ...] -> [B/A, A, ...]: micro-batch j is rows j, j+A, ... so a row-sharded batch
    splits without moving data between devices."""
    return x.reshape(x.shape[0] // accum, accum, *x.shape[1:])


def _accumulated_grads(params, batch, key, scale, model_config, accum, loss_fn, use_dropout):
    """Gradients of scale * (sum nll / total weight) summed over `accum` micro-batches."""
    total = jnp.sum(batch["weights"].astype(jnp.float32))
    denom = jnp.where(total > 0, total, 1.0)  # an all-padding batch has loss 0, not NaN

    def micro(mb, j):
        rng = jax.random.fold_in(key, j) if use_dropout else None

        def f(p):
            nll, w = loss_fn(p, mb, model_config, rng)
            return nll / denom * scale, (nll, w)

        (_, (nll, w)), g = jax.value_and_grad(f, has_aux=True)(params)
        return g, nll, w

    if accum == 1:
        return micro(batch, 0)
    split = jax.tree_util.tree_map(lambda x: _split_micro(x, accum), batch)

    def body(carry, j):
        mb = jax.tree_util.tree_map(lambda x: jax.lax.dynamic_index_in_dim(x, j, axis=1, keepdims=False), split)
        g, nll, w = micro(mb, j)
        g_acc, nll_acc, w_acc = carry
        return (jax.tree_util.tree_map(jnp.add, g_acc, g), nll_acc + nll, w_acc + w), None

    zeros = (jax.tree_util.tree_map(jnp.zeros_like, params), jnp.float32(0), jnp.float32(0))
    (g, nll, w), _ = jax.lax.scan(body, zeros, jnp.arange(accum))
    return g, nll, w


def make_train_step(
    model_config: GPT2Config,
    tc: Any,
    tx: optax.GradientTransformationExtraArgs,
    schedules: Sequence[optax.Schedule],
    per_class: bool,
    loss_fn: LossFn = token_loss_sums,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """Pure (state, batch) -> (state, metrics); jit it with `jit_train_step`.

    `schedules`: one per class model (class c follows schedules[c]), or one for every model.
    A model whose batch has no real token (all weights 0) takes no step: params, optimizer
    state (hence its schedule position) and loss scale stay as they are.
    metrics (per class when stacked): nll_sum, weight, grad_norm, lr, finite, real, loss_scale, skipped."""
    accum = int(tc.grad_accum)
    use_scale = model_config.dtype == "float16"
    use_dropout = model_config.dropout > 0

    def learning_rate(count, c):
        if len(schedules) == 1:
            return schedules[0](count)
        return jnp.stack([s(count) for s in schedules])[c]

    def one_model(params, opt_state, ls, skipped, batch, key, c):
        scale = ls.scale if use_scale else jnp.float32(1)
        g, nll, w = _accumulated_grads(params, batch, key, scale, model_config, accum, loss_fn, use_dropout)
        if use_scale:
            g = jax.tree_util.tree_map(lambda x: x / scale, g)
        finite = optim.all_finite(g) & jnp.isfinite(nll)
        real = jnp.any(batch["weights"] != 0)  # (not w > 0: a NaN weight is an overflow to skip, not padding)
        lr = learning_rate(optim.applied_updates(opt_state), c)
        updates, new_opt = tx.update(g, opt_state, params, learning_rate=lr)
        new_params = optax.apply_updates(params, updates)
        applied = real & finite if use_scale else real
        new_params = optim.select_tree(applied, new_params, params)
        new_opt = optim.select_tree(applied, new_opt, opt_state)
        if use_scale:
            new_ls = optim.select_tree(real, optim.update_loss_scale(ls, finite, tc), ls)
            skipped = skipped + (real & ~finite).astype(jnp.int32)
        else:
            new_ls = ls
        m = dict(nll_sum=nll, weight=w, grad_norm=optax.tree.norm(g), lr=lr, finite=finite, real=real,
                 loss_scale=scale, skipped=skipped)
        return new_params, new_opt, new_ls, skipped, m

    def step_fn(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        args = (state.params, state.opt_state, state.loss_scale, state.skipped, batch)
        if not per_class:
            out = one_model(*args, key, 0)
        else:
            k = state.skipped.shape[0]

            def per(p, o, ls, sk, b, c):
                return one_model(p, o, ls, sk, b, jax.random.fold_in(key, c), c)

            classes = jnp.arange(k)
            if tc.get("stack_classes", True):
                out = jax.vmap(per)(*args, classes)
            else:
                out = jax.lax.map(lambda a: per(*a), (*args, classes))
        params, opt_state, ls, skipped, m = out
        return TrainState(state.step + 1, params, opt_state, ls, skipped, state.rng), m

    return step_fn


def make_eval_step(model_config: GPT2Config, per_class: bool, loss_fn: LossFn = token_loss_sums) -> Callable:
    """Jitted (params, batch) -> (nll_sum, weight) without dropout; per class when stacked."""

    def f(params, batch):
        return loss_fn(params, batch, model_config, None)

    return jax.jit(jax.vmap(f) if per_class else f)


# --- devices --------------------------------------------------------------------------------


def make_mesh(devices: Sequence[Any] | None = None) -> Mesh:
    """1-D data-parallel mesh over all (global) devices."""
    devs = np.asarray(jax.devices() if devices is None else devices)
    return Mesh(devs, ("data",))


def batch_sharding(mesh: Mesh, per_class: bool) -> NamedSharding:
    """Rows (B) over 'data'; the class axis K, when present, is not split."""
    return NamedSharding(mesh, P(None, "data") if per_class else P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def shard_batch(batch: Batch, sharding: NamedSharding) -> dict:
    """Host numpy batch (this process's rows) -> global sharded jax arrays."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def jit_train_step(step_fn: Callable, mesh: Mesh) -> Callable:
    """jit with the state donated (no second copy of params/optimizer state); the new state and
    the metrics come out replicated."""
    return jax.jit(step_fn, donate_argnums=0, out_shardings=replicated(mesh))


@functools.lru_cache(maxsize=8)
def compiled_train_step(
    model_config: GPT2Config, tc: ml_collections.FrozenConfigDict, per_class: bool, total_steps: int | tuple[int, ...],
    mesh: Mesh, loss_fn: LossFn = token_loss_sums,
) -> tuple[optax.GradientTransformationExtraArgs, tuple[optax.Schedule, ...], Callable]:
    """(optimizer, schedules, jitted step), memoised so that repeated `train` calls in one process
    (resume, sweeps, tests) with the same settings reuse one compilation. `total_steps`: the
    optimizer updates of each class model in the run (a tuple, one per class), or one int for
    every model; each model's schedule runs over its own total."""
    totals = total_steps if isinstance(total_steps, tuple) else (int(total_steps),)
    schedules = tuple(optim.make_schedule(tc, n) for n in totals)
    tx = optim.make_optimizer(tc)
    step = jit_train_step(make_train_step(model_config, tc, tx, schedules, per_class, loss_fn), mesh)
    return tx, schedules, step


def _prefetch(batches: Iterable[Batch], sharding: NamedSharding, size: int, check: Callable[[Batch], None]) -> Iterator[dict]:
    """Put the next `size` batches on the devices ahead of use (device_put is asynchronous)."""
    queue: list[dict] = []
    for b in batches:
        check(b)
        queue.append(shard_batch(b, sharding))
        if len(queue) > max(size, 0):
            yield queue.pop(0)
    yield from queue


def check_batch(batch: Batch, *, per_class: bool, num_classes: int | None, accum: int, n_devices: int) -> None:
    """Shape errors here, with a message, rather than deep inside XLA."""
    shape = np.shape(batch["inputs"])
    want = 3 if per_class else 2
    if len(shape) != want:
        raise ValueError(f"expected {'[K, B, T]' if per_class else '[B, T]'} batches, got inputs of shape {shape}")
    if per_class and shape[0] != num_classes:
        raise ValueError(f"batch has {shape[0]} classes, the stacked params {num_classes}")
    rows = shape[-2] * jax.process_count()
    if rows % accum or (rows // accum) % n_devices:
        raise ValueError(f"{rows} rows per step must split into grad_accum={accum} micro-batches divisible by {n_devices} devices")


# --- evaluation -----------------------------------------------------------------------------


def evaluate_loss(eval_step: Callable, params: Any, batches: Iterable[Batch], sharding: NamedSharding) -> dict[str, float]:
    """Token-mean validation loss over all batches (and all classes when stacked)."""
    sums = [eval_step(params, shard_batch(b, sharding)) for b in batches]  # no host sync in between
    sums = jax.device_get(sums)
    nll, weight = sum(float(np.sum(n)) for n, _ in sums), sum(float(np.sum(w)) for _, w in sums)
    return {"val_loss": nll / max(weight, 1e-30)}


def make_loss_evaluator(
    config: Any, model_config: GPT2Config, val_batches: Callable[[], Iterable[Batch]], mesh: Mesh | None = None
) -> Callable[[Any], dict[str, float]]:
    """An `eval_fn` for `train`: params -> {'val_loss': ...} over `val_batches()`."""
    per_class = is_per_class(config)
    step = make_eval_step(model_config, per_class, loss_fn_for(config))
    sharding = batch_sharding(mesh or make_mesh(), per_class)
    return lambda params: evaluate_loss(step, params, val_batches(), sharding)


# --- the loop -------------------------------------------------------------------------------


@dataclasses.dataclass
class TrainResult:
    state: TrainState
    stop_reason: str  # completed | early_stop | max_steps | interrupted
    epoch: int  # epoch of the next batch
    step: int
    best: float | None  # best value of train.best_metric
    best_step: int | None
    history: list[dict]  # this call's per-step {'step', 'loss', 'lr', ...} (exact, not windowed)
    evals: list[dict]  # this call's per-epoch eval metrics
    signal: int | None = None  # the signal that interrupted the run (SIGINT, SIGTERM)

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
        logging.warning("received signal %d: stopping after this step and saving a checkpoint", signum)

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


def _total_steps(tc: Any, num_batches: Callable[[int], int | Sequence[int]]) -> tuple[int, ...]:
    """Optimizer updates of each model over the run: its real steps of every epoch, cut where
    `max_steps` ends the run (an epoch's steps are its largest count; a model's come first)."""
    left = int(tc.max_steps) if tc.max_steps > 0 else None
    totals = None
    for e in range(int(tc.epochs)):
        n = _steps_per_model(num_batches(e))
        steps = max(n) if left is None else min(max(n), left)
        done = tuple(min(x, steps) for x in n)
        totals = done if totals is None else tuple(a + b for a, b in zip(totals, done))
        if left is not None:
            left -= steps
    return totals or (0,)


def _track_best(meta: dict, ev: Mapping[str, float], step: int, tc: Any) -> bool:
    """Update the best value / patience counter in `meta`; True when early stopping is due."""
    if tc.best_metric not in ev:
        return False
    value, best = ev[tc.best_metric], meta["best"]
    if best is None or (value < best if metric_mode(tc.best_metric) == "min" else value > best):
        meta.update(best=value, best_step=step, bad_epochs=0)
    else:
        meta["bad_epochs"] = int(meta["bad_epochs"]) + 1
    if tc.early_stop_patience > 0 and meta["bad_epochs"] >= tc.early_stop_patience:
        logging.info("early stopping: %s did not improve for %d epochs", tc.best_metric, meta["bad_epochs"])
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
    callbacks: Sequence[Callable[[int, dict], None]] = (),
    loss_fn: LossFn | None = None,
) -> TrainResult:
    """Train (or resume training in `workdir`) and return the final state.

    train_batches(epoch, start) yields the host batches of `epoch` from batch index `start` on
    (one batch = one optimizer step: `train.batch_size` rows, [K, B, T] for per_class);
    num_batches(epoch) says how many steps each model takes in it: an int, or for per_class a
    tuple of K counts (`PerClassStream.steps_per_model`: class k's real batches come first, then
    padding). The epoch has the largest count of steps; each model's schedule runs over its own
    total (an int means every class model takes every step).
    eval_fn(params) -> metrics (e.g. val_loss, val_accuracy) runs at each epoch end.
    callbacks(step, step_metrics) run after every step (hooks for tests and tooling)."""
    setup_distributed(config)
    loss_fn = loss_fn or loss_fn_for(config)
    tc, workdir = config.train, Path(workdir)
    nb = num_batches if callable(num_batches) else (lambda _e, n=int(num_batches): n)
    per_class = is_per_class(config)
    lead = jax.process_index() == 0
    workdir.mkdir(parents=True, exist_ok=True)
    if lead:
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))

    mesh = make_mesh()
    k = num_stacked_classes(init_params) if per_class else None
    totals = _total_steps(tc, nb)
    if len(totals) not in (1, k or 1):
        raise ValueError(f"num_batches gives {len(totals)} step counts per epoch for {k or 1} model(s)")
    logging.info("optimizer updates per model over the run: %s (warmup %s)", list(totals),
                 [optim.warmup_length(tc, n) for n in totals])
    tx, _, step_fn = compiled_train_step(
        model_config, ml_collections.FrozenConfigDict(tc), per_class, totals, mesh, loss_fn
    )
    # A copy: the step donates the state, and the caller's `init_params` must stay valid.
    params = jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), init_params)
    state = jax.device_put(init_state(params, tx, tc, int(config.seed), k), replicated(mesh))
    bsharding = batch_sharding(mesh, per_class)
    use_scale = model_config.dtype == "float16"

    ckpt = Checkpointer(workdir / "checkpoints", tc.keep_checkpoints, tc.best_metric, tc.get("async_checkpoint", True))
    meta = {"epoch": 0, "batch": 0, "best": None, "best_step": None, "bad_epochs": 0, "stop_reason": None}
    if ckpt.latest_step() is not None:
        state, meta, _ = ckpt.restore(state, "latest", set_aside_damaged=True)
        logging.info("resumed from step %d (epoch %d, batch %d) in %s", int(state.step), meta["epoch"], meta["batch"], workdir)
    writer = metrics_lib.MetricsWriter(workdir, tensorboard=tc.get("tensorboard", True), enabled=lead)
    history: list[dict] = []
    evals: list[dict] = []
    step = int(state.step)
    reason = meta.get("stop_reason")

    def save(metrics: dict | None = None) -> None:
        ckpt.save(step, state, dict(meta), metrics)

    window = {"nll": 0.0, "weight": 0.0}
    speed = metrics_lib.Throughput()

    def record(done: int, i: int, m_device: dict, epoch: int, bar) -> dict:
        """Host side of a finished step: fetch its metrics, log, run callbacks. Called one step
        late (while the next step runs) so that the host never waits for the device in between."""
        nonlocal window
        m = jax.device_get(m_device)
        nll, w = float(np.sum(m["nll_sum"])), float(np.sum(m["weight"]))
        finite = bool(np.all(m["finite"]))
        if not finite and not use_scale:
            raise FloatingPointError(f"non-finite loss at step {done} (epoch {epoch}, batch {i}): loss sum {nll}")
        real = np.atleast_1d(m["real"])  # class models that took this step (the others had padding only)

        def of_real(x) -> float:
            return float(np.mean(np.atleast_1d(x)[real])) if real.any() else 0.0

        rec = {"step": done, "loss": nll / max(w, 1e-30), "lr": of_real(m["lr"]),
               "grad_norm": of_real(m["grad_norm"]), "tokens": w, "finite": finite}
        if use_scale:
            rec["loss_scale"] = float(np.min(m["loss_scale"]))
        history.append(rec)
        if finite:
            window["nll"] += nll
            window["weight"] += w
        speed.add(w)
        bar.update(1)
        if done % int(tc.log_every) == 0:
            logged = {"train_loss": window["nll"] / max(window["weight"], 1e-30), "lr": rec["lr"],
                      "grad_norm": rec["grad_norm"], "skipped_steps": int(np.sum(m["skipped"])), **speed.rates()}
            if use_scale:
                logged["loss_scale"] = rec["loss_scale"]
            window = {"nll": 0.0, "weight": 0.0}
            writer.write(done, "train", logged)
            metrics_lib.log_line(done, logged, ("train_loss", "lr", "tokens_per_s", "steps_per_s", "skipped_steps"))
            bar.set_postfix(loss=f"{logged['train_loss']:.4f}", tok_s=f"{logged['tokens_per_s']:.0f}",
                            it_s=f"{logged['steps_per_s']:.2f}")
        for cb in callbacks:
            cb(done, rec)
        return rec

    try:
        with _StopOnSignal() as stop:
            epoch = int(meta["epoch"])
            while reason is None and epoch < int(tc.epochs):
                if tc.max_steps > 0 and step >= tc.max_steps:
                    reason = "max_steps"
                    break
                start = int(meta["batch"]) if epoch == int(meta["epoch"]) else 0
                total = max(_steps_per_model(nb(epoch)))
                bar = metrics_lib.progress_bar(total, start, epoch, lead and tc.get("progress_bar", True))
                check = functools.partial(check_batch, per_class=per_class, num_classes=k, accum=int(tc.grad_accum), n_devices=mesh.size)
                batches = _prefetch(train_batches(epoch, start), bsharding, int(config.data.get("prefetch", 2)), check)
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
                    if reason is not None or (tc.ckpt_every > 0 and step % int(tc.ckpt_every) == 0 and not last_of_epoch):
                        record(*pending, epoch, bar)
                        pending = None
                        save()
                    if reason is not None:
                        break
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
    if lead and tc.get("plot", True):
        metrics_lib.plot_curves(writer.path, workdir / "curves.png")
    return TrainResult(state, reason, int(meta["epoch"]), step, meta["best"], meta["best_step"], history, evals,
                       stop.signum if reason == "interrupted" else None)
