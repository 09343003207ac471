"""The train step as a pure function, and what it needs around it: state, gradient
accumulation, the jitted data-parallel step, the validation-loss step, device placement.

One gradient path for every objective (`training/objectives.py`): the step takes the gradient
of the objective's loss over all (possibly class-stacked) parameters, summed over
micro-batches, then updates each model on its own:
- K class models are stacked on a leading class axis (params, optimizer state, loss scale and
  the [K, B, T] batch); one model trains on [B, T] batches (or [K, B, T] slices of the
  decision objective). Each model's update has its own gradient clip, learning-rate schedule
  over its own updates (`optim.scheduled_lr`), float16 loss scale and skipped-step count,
  exactly as if it were fine-tuned alone; a model that is not `real` this step (its own epoch
  is over: all padding) takes no update.
- Data parallel over the mesh's 'data' axis (`system/sharding.py`): the batch is sharded on its
  row axis B, each process feeding its own rows; the state is replicated over 'data' (class
  models split over 'class' when `train.class_shards` > 1), and XLA inserts the all-reduce.
- Gradient accumulation runs inside the step (`lax.scan` over micro-batches, micro-batch j =
  rows j, j+A, ...); the loss is normalised by the whole batch's totals, so A micro-batches of
  B rows equal one batch of A*B rows up to float rounding.
- Dropout keys come from (seed, step, micro-batch) and the class: resuming replays them exactly.
  Their PRNG is `train.dropout_prng` (`dropout_prng`): JAX's default threefry2x32, or XLA's
  RngBitGenerator ('rbg', 'unsafe_rbg'), cheaper on GPU; the state holds the base key's raw
  data ([2] or [4] uint32), and the step wraps it with that implementation (no global JAX
  setting: parameter init and sampling keep the default PRNG).
- Several updates per call (`train.steps_per_call` S > 1, `scan_steps`): a `lax.scan` of the
  same step over S stacked batches, so a small model's step is not bound by the host's
  per-call dispatch; a call of fewer updates leaves its last slots off (`live`).
- float16 (`model.dtype`): dynamic loss scaling per model; a step with non-finite gradients is
  skipped. A joint objective (the decision) runs in bfloat16 or float32.
- Weight averaging (`train.ema_decay` > 0): the state also holds an exponential moving
  average of each model's parameters (`average`), updated after each applied update; the
  run is validated, ranked, exported and evaluated on it (`shipped_params`), trained on the
  live parameters. It is in the checkpoint, so a resumed run's average is the uninterrupted
  one's.
- Adversarial training (`train.adversarial_eps` > 0; Miyato et al. 2017): the gradient also
  takes `train.adversarial_weight` x the loss with the input token embeddings moved by
  `adversarial_perturbation` (same micro-batch, same dropout keys): a second forward and
  backward pass. The logged loss stays the unperturbed one.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from gencls_jax.errors import RunError
from gencls_jax.model.gpt2 import GPT2Config
from gencls_jax.system import sharding
from gencls_jax.training import optim
from gencls_jax.training.objectives import Objective

Array = jax.Array
Batch = Mapping[str, Any]


# --- state ----------------------------------------------------------------------------------


class TrainState(NamedTuple):
    """Everything a resumed run needs besides the data position. With per-class training every
    field but `step` and `rng` has a leading class axis."""

    step: Array  # int32 scalar: optimizer steps taken (including skipped ones)
    params: Any
    opt_state: Any
    loss_scale: optim.LossScale
    skipped: Array  # int32: steps skipped for non-finite grads (float16 loss scaling)
    rng: Array  # uint32 key data of the dropout base key: [2] threefry2x32, [4] (unsafe_)rbg
    average: Any = None  # train.ema_decay > 0: the moving average of params; None when off


def shipped_params(state: TrainState) -> Any:
    """The parameters a run is validated, ranked and exported by: the moving average when
    `train.ema_decay` > 0, else the live parameters."""
    return state.params if state.average is None else state.average


# train.dropout_prng: jax.random's PRNG implementations the dropout keys may use, and the
# shape of their key data (`TrainState.rng`)
DROPOUT_PRNGS = {"threefry2x32": (2,), "rbg": (4,), "unsafe_rbg": (4,)}


def dropout_prng(tc: Any) -> str:
    """`train.dropout_prng`, checked: the PRNG implementation of the dropout keys."""
    impl = tc.dropout_prng
    if not isinstance(impl, str) or impl not in DROPOUT_PRNGS:
        raise RunError(f"train.dropout_prng must be one of {tuple(DROPOUT_PRNGS)}, got {impl!r}")
    return impl


def dropout_key_data(seed: int, tc: Any) -> Array:
    """The raw uint32 data of the dropout base key of `seed` under `train.dropout_prng` (what
    `TrainState.rng` holds; `dropout_key` wraps it back)."""
    return jax.random.key_data(jax.random.key(seed, impl=dropout_prng(tc)))


def dropout_key(data: Array, impl: str) -> Array:
    """The typed dropout key of `TrainState.rng`'s data under the PRNG `impl`; data of another
    PRNG's shape (a state made under another `train.dropout_prng`) is one line (RunError)."""
    if tuple(data.shape) != DROPOUT_PRNGS[impl]:
        raise RunError(
            f"the train state's dropout key has shape {tuple(data.shape)}, "
            f"train.dropout_prng={impl!r} needs {DROPOUT_PRNGS[impl]}: the state was made "
            "under another train.dropout_prng"
        )
    return jax.random.wrap_key_data(data, impl=impl)


def ema_decay(tc: Any) -> float:
    """`train.ema_decay`, checked: 0 = off, else in (0, 1)."""
    d = tc.ema_decay
    if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 <= d < 1.0:
        raise RunError(f"train.ema_decay must be a number in [0, 1) (0 = off), got {d!r}")
    return float(d)


def average_update(average: Any, params: Any, updates: Array, decay: float) -> Any:
    """The moving average after a model's `updates`-th applied update: decay_t * average +
    (1 - decay_t) * params, decay_t = min(decay, (1 + t) / (10 + t)) so the first updates are
    not outweighed by the init (TensorFlow's ExponentialMovingAverage with num_updates)."""
    t = jnp.asarray(updates, jnp.float32)
    d = jnp.minimum(jnp.float32(decay), (1.0 + t) / (10.0 + t))
    return jax.tree_util.tree_map(lambda a, p: d * a + (1.0 - d) * p, average, params)


def init_state(
    params: Any, tx: optax.GradientTransformation, tc: Any, seed: int, num_classes: int | None
) -> TrainState:
    """Fresh state. `num_classes` = K for class-stacked params, None for one model."""
    if num_classes is None:
        opt_state, ls, skipped = (
            tx.init(params),
            optim.init_loss_scale(tc),
            jnp.zeros((), jnp.int32),
        )
    else:
        opt_state = jax.vmap(tx.init)(params)
        ls = jax.tree_util.tree_map(
            lambda x: jnp.broadcast_to(x, (num_classes,)), optim.init_loss_scale(tc)
        )
        skipped = jnp.zeros((num_classes,), jnp.int32)
    rng = dropout_key_data(seed, tc)
    average = None
    if ema_decay(tc) > 0:  # a copy: the step donates the state
        average = jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), params)
    return TrainState(jnp.zeros((), jnp.int32), params, opt_state, ls, skipped, rng, average)


def num_stacked_classes(params: Any) -> int:
    """K of a class-stacked GPT-2 tree (wte embedding is [K, V, D])."""
    wte = params["wte"]["embedding"]
    if wte.ndim != 3:
        raise ValueError(
            f"stacked training needs params stacked on a class axis; wte has shape {wte.shape}"
        )
    return int(wte.shape[0])


# --- gradients --------------------------------------------------------------------------------


def micro_batches(batch: Batch, accum: int) -> dict:
    """Every array with a leading micro-batch axis [A, ...]: micro-batch j is rows j, j+A, ...
    of the row axis (the second-to-last axis of a token array, the only axis of `labels`), so a
    row-sharded batch splits without moving data between devices."""

    def split(name, x):
        axis = 0 if name == "labels" else x.ndim - 2
        parts = x.reshape(*x.shape[:axis], x.shape[axis] // accum, accum, *x.shape[axis + 1 :])
        return jnp.moveaxis(parts, axis + 1, 0)

    return {name: split(name, x) for name, x in batch.items()}


def adversarial_perturbation(g: Array, segment_ids: Array | None, eps: float) -> Array:
    """eps x g / ||g||, the L2 norm taken per text over its tokens x width: `g` [..., B, T, D]
    is the loss's gradient with respect to the input token embeddings, `segment_ids` [..., B, T]
    tell the texts of a row apart (packed rows; a right-padded row is one text, padding
    segment 0; None: each row one text). Each class's reading of a text (a slice, a class
    model) is its own block. A block whose gradient is 0 (padding, a filler row) gets 0."""
    g = jax.lax.stop_gradient(g).astype(jnp.float32)
    sq = jnp.sum(g * g, axis=-1).reshape(-1, g.shape[-2])  # [rows, T]
    seg = jnp.zeros(sq.shape, jnp.int32) if segment_ids is None else segment_ids.reshape(sq.shape)
    row = jnp.arange(sq.shape[0])[:, None]
    per_text = jnp.zeros((sq.shape[0], sq.shape[1] + 1), jnp.float32).at[row, seg].add(sq)
    norm = jnp.sqrt(per_text[row, seg]).reshape(g.shape[:-1])[..., None]
    return jnp.where(norm > 0, eps * g / jnp.where(norm > 0, norm, 1.0), 0.0)


def loss_grads(
    objective: Objective,
    params: Any,
    batch: Batch,
    model_config: GPT2Config,
    key: Array | None,
    scale: Array,
    accum: int,
    adversarial: tuple[float, float] = (0.0, 1.0),
) -> tuple[Any, dict]:
    """(gradients of sum(scale * losses), the objective's sums) over `accum` micro-batches,
    each micro-batch's loss normalised by the whole batch's totals. `scale`: each model's
    float16 loss scale (1 otherwise); `key` None: no dropout. `adversarial` (eps, weight), eps
    > 0: the gradients of loss + weight x the loss at `adversarial_perturbation` (the sums stay
    the unperturbed loss's)."""
    totals = objective.totals(batch)
    eps, weight = adversarial

    def micro(mb, j):
        def f(p, delta=None):
            drop = None if key is None else (key, j)
            sums = objective.sums(p, mb, model_config, drop, delta)
            return jnp.sum(objective.losses(sums, totals) * scale), sums

        if not eps:
            (_, sums), g = jax.value_and_grad(f, has_aux=True)(params)
            return g, sums
        zero = jnp.zeros((*mb["inputs"].shape, model_config.n_embd), jnp.float32)
        (_, sums), (g, g_in) = jax.value_and_grad(f, (0, 1), has_aux=True)(params, zero)
        r = adversarial_perturbation(g_in, mb.get("segment_ids"), eps)
        g_adv, _ = jax.grad(f, has_aux=True)(params, r)
        return jax.tree_util.tree_map(lambda a, b: a + weight * b, g, g_adv), sums

    if accum == 1:
        return micro(batch, 0)
    parts = micro_batches(batch, accum)

    def body(carry, j):
        g, sums = micro({n: x[j] for n, x in parts.items()}, j)
        return jax.tree_util.tree_map(jnp.add, carry, (g, sums)), None

    zeros = jax.eval_shape(lambda: micro({n: x[0] for n, x in parts.items()}, 0))
    zeros = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), zeros)
    (g, sums), _ = jax.lax.scan(body, zeros, jnp.arange(accum))
    return g, sums


# --- steps ----------------------------------------------------------------------------------


def make_train_step(
    model_config: GPT2Config,
    tc: Any,
    tx: optax.GradientTransformationExtraArgs,
    stacked: bool,
    objective: Objective,
) -> Callable[[TrainState, Batch, dict], tuple[TrainState, dict]]:
    """Pure (state, batch, run) -> (state, metrics); jit it with `jit_train_step`.

    `run` (`run_values`): the numbers of this run that are not shapes, as arrays: each model's
    schedule (`optim.schedule_values`: one per class model, class c follows entry c, or one
    for every model) and the objective's (`Objective.values`: the class prior, the weights of
    its terms). Arguments, not constants: one compiled step serves runs on other texts, of
    other lengths, lr or lambda (the persistent cache's key is the program).
    metrics: the objective's sums (nll, weight, tokens; ce, texts, correct for the decision),
    and per model grad_norm, lr, finite, real, loss_scale, skipped."""
    accum = int(tc.grad_accum)
    adversarial = (float(tc.adversarial_eps), float(tc.adversarial_weight))
    decay = ema_decay(tc)
    use_scale = model_config.dtype == "float16"
    use_dropout = model_config.dropout > 0
    prng = dropout_prng(tc)
    if not objective.per_model and use_scale:
        raise ValueError("train.objective='decision' runs in bfloat16 or float32, not float16")

    def update(run, params, opt_state, ls, skipped, average, g, loss_ok, real, c):
        """One model's optimizer update from its gradients (skipped when not `real`, or on a
        float16 overflow), and its moving average (None when off) after it."""
        scale = ls.scale if use_scale else jnp.float32(1)
        if use_scale:
            g = jax.tree_util.tree_map(lambda x: x / scale, g)
        finite = optim.all_finite(g) & loss_ok
        sched = run["schedule"]
        model = c if sched["total"].shape[0] > 1 else 0
        lr = optim.scheduled_lr(tc.schedule, optim.applied_updates(opt_state), sched, model)
        updates, new_opt = tx.update(g, opt_state, params, learning_rate=lr)
        new_params = optax.apply_updates(params, updates)
        applied = real & finite if use_scale else real
        new_params = optim.select_tree(applied, new_params, params)
        new_opt = optim.select_tree(applied, new_opt, opt_state)
        if average is not None:
            moved = average_update(average, new_params, optim.applied_updates(new_opt), decay)
            average = optim.select_tree(applied, moved, average)
        if use_scale:
            ls = optim.select_tree(real, optim.update_loss_scale(ls, finite, tc), ls)
            skipped = skipped + (real & ~finite).astype(jnp.int32)
        m = dict(grad_norm=optax.tree.norm(g), lr=lr, finite=finite, real=real, loss_scale=scale)
        return new_params, new_opt, ls, skipped, average, {**m, "skipped": skipped}

    def step_fn(state: TrainState, batch: Batch, run: dict) -> tuple[TrainState, dict]:
        key = jax.random.fold_in(dropout_key(state.rng, prng), state.step)
        scale = state.loss_scale.scale if use_scale else jnp.float32(1)
        obj = objective.bind(run["objective"])
        g, sums = loss_grads(
            obj,
            state.params,
            batch,
            model_config,
            key if use_dropout else None,
            scale,
            accum,
            adversarial,
        )
        # per model: a joint objective's one loss is every model's
        loss_ok = jnp.isfinite(obj.losses(sums, obj.totals(batch)))
        real = obj.real(batch)
        args = (state.params, state.opt_state, state.loss_scale, state.skipped, state.average, g)
        if stacked:
            k = state.skipped.shape[0]
            loss_ok, real = (jnp.broadcast_to(x, (k,)) for x in (loss_ok, real))
            out = jax.vmap(update, in_axes=(None,) + (0,) * 9)(
                run, *args, loss_ok, real, jnp.arange(k)
            )
        else:
            out = update(run, *args, loss_ok[0], real[0], 0)
        params, opt_state, ls, skipped, average, m = out
        new = TrainState(state.step + 1, params, opt_state, ls, skipped, state.rng, average)
        return new, {**sums, **m}

    return step_fn


def scan_steps(step_fn: Callable) -> Callable[[TrainState, Batch, dict], tuple[TrainState, dict]]:
    """S updates in one call: (state, {'batch': every array [S, ...], 'live': bool [S]}, run) ->
    (state, each update's metrics [S, ...]). A slot that is not live leaves the state as it is
    (step counter, dropout keys and schedules included; its metrics are zeros): a call of g < S
    updates (cut at a checkpoint, a shape change or the epoch's end) runs the same program."""

    def steps(state: TrainState, call: Batch, run: dict) -> tuple[TrainState, dict]:
        def skip(state, batch):
            shapes = jax.eval_shape(step_fn, state, batch, run)[1]
            return state, jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)

        def body(state, slot):
            batch, live = slot
            return jax.lax.cond(live, lambda s, b: step_fn(s, b, run), skip, state, batch)

        return jax.lax.scan(body, state, (call["batch"], call["live"]))

    return steps


def make_eval_step(model_config: GPT2Config, objective: Objective) -> Callable:
    """Jitted (params, batch) -> the objective's sums, without dropout."""
    return jax.jit(lambda params, batch: objective.sums(params, batch, model_config, None))


# --- compiled step ----------------------------------------------------------------------------


def jit_train_step(
    step_fn: Callable, run: dict, mesh: Mesh, stacked: bool, fsdp: bool = False
) -> Callable:
    """jit with the state donated (no second copy of params/optimizer state); the new state keeps
    its layout (`sharding.state_shardings`: class models split over the 'class' axis, the rest
    replicated) and the metrics come out replicated. Jitted at the first call (or at
    `call.lower(state, batch)`, e.g. to read the program's memory use or HLO), which gives the
    state's structure. `run` (`run_values`) goes to every call, replicated on the mesh: the
    caller sees (state, batch)."""
    jitted = {}
    run = sharding.put_replicated(mesh, run)

    def jit_for(state):
        if "step" not in jitted:
            out = (
                sharding.state_shardings(mesh, state, stacked, fsdp),
                sharding.replicated(mesh),
            )
            jitted["step"] = jax.jit(step_fn, donate_argnums=0, out_shardings=out)
        return jitted["step"]

    def call(state, batch):
        return jit_for(state)(state, batch, run)

    call.lower = lambda state, batch: jit_for(state).lower(state, batch, run)
    return call


@functools.lru_cache(maxsize=8)
def compiled_train_step(
    model_config: GPT2Config,
    tc: ml_collections.FrozenConfigDict,
    stacked: bool,
    total_steps: int | tuple[int, ...],
    mesh: Mesh,
    objective: Objective,
) -> tuple[optax.GradientTransformationExtraArgs, Callable]:
    """(optimizer, jitted step), memoised so that repeated `train` calls in one process (resume,
    sweeps, tests) with the same settings reuse one compilation. `total_steps`: the optimizer
    updates of each class model in the run (a tuple, one per class), or one int for every
    model; each model's schedule runs over its own total. `train.steps_per_call` > 1: the step
    takes `scan_steps`' stacked calls."""
    totals = total_steps if isinstance(total_steps, tuple) else (int(total_steps),)
    tx = optim.make_optimizer(tc)
    step_fn = make_train_step(model_config, tc, tx, stacked, objective)
    if steps_per_call(tc) > 1:
        step_fn = scan_steps(step_fn)
    run = run_values(tc, totals, objective)
    return tx, jit_train_step(step_fn, run, mesh, stacked, bool(tc.fsdp))


def run_values(tc: Any, totals: tuple[int, ...], objective: Objective) -> dict:
    """What the train step takes as data rather than as constants: the schedules'
    (`optim.schedule_values`) and the objective's (`Objective.values`) numbers."""
    return dict(schedule=optim.schedule_values(tc, totals), objective=objective.values())


def steps_per_call(tc: Any) -> int:
    """`train.steps_per_call`, checked (>= 1)."""
    n = int(tc.steps_per_call)
    if n < 1:
        raise RunError(f"train.steps_per_call must be >= 1, got {n}")
    return n


def check_batch(
    batch: Batch, *, stacked: bool, num_classes: int | None, accum: int, n_devices: int
) -> None:
    """Shape errors here, with a message, rather than deep inside XLA: [K, B, T] batches for
    stacked models or sliced rows (`labels` [B] with them), [B, T] for one model. Packed
    sliced rows (`text_ids`, shaped as the inputs): [K, R, T] with `labels` [B], B texts in R
    rows, and no micro-batches (their text slots are the whole step's)."""
    shape = np.shape(batch["inputs"])
    sliced = "labels" in batch
    want = 3 if stacked or sliced else 2
    if len(shape) != want:
        raise ValueError(
            f"expected {'[K, B, T]' if want == 3 else '[B, T]'} batches, "
            f"got inputs of shape {shape}"
        )
    if stacked and shape[0] != num_classes:
        raise ValueError(f"batch has {shape[0]} classes, the stacked params {num_classes}")
    packed = "text_ids" in batch
    if sliced and packed:
        if np.shape(batch["text_ids"]) != shape:
            raise ValueError(
                f"a packed sliced batch needs text_ids shaped as its inputs {shape}, got "
                f"{np.shape(batch['text_ids'])}"
            )
        if np.ndim(batch["labels"]) != 1:
            raise ValueError(
                f"a packed sliced batch needs labels [B], got shape {np.shape(batch['labels'])}"
            )
        if accum > 1:
            raise ValueError(
                "a packed sliced batch takes no micro-batches: its texts span its rows "
                f"(grad_accum={accum})"
            )
        if np.shape(batch["labels"])[0] % n_devices:
            raise ValueError(
                f"{np.shape(batch['labels'])[0]} texts per step do not split over "
                f"{n_devices} devices"
            )
    elif sliced and np.shape(batch["labels"]) != shape[1:2]:
        raise ValueError(f"a sliced batch needs labels [B] for its {shape[1]} rows")
    rows = shape[-2]  # the global batch: every process builds all of it, feeds its own rows
    if rows % accum or (rows // accum) % n_devices:
        raise ValueError(
            f"{rows} rows per step must split into grad_accum={accum} micro-batches "
            f"divisible by {n_devices} devices"
        )
