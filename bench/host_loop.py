"""Host microseconds per training step, by component, of the real training loop (issue 25: a
small set's step is bound by the host, not the device).

    # on the GPU: TREC with small_set.py (from the IMDB export), S = 1, 4, 16, 3 runs each
    python bench/host_loop.py --config=configs/small_set.py --per-call=1,4,16 -- \\
        --config.model.init=runs/pretrain/export \\
        --config.data.train_path=../shared/data/trec/train.jsonl \\
        --config.data.test_path=../shared/data/trec/test.jsonl
    # CPU: the same loop with a model of little device work (--micro: 1 layer, width 16, a
    # 1,000-id vocabulary); what the device takes shows in 'fetch', the host in the rest
    python bench/host_loop.py --config=configs/small_set.py --micro --per-call=1,4,16 -- \\
        --config.data.train_path=../shared/data/trec/train.jsonl \\
        --config.data.test_path=../shared/data/trec/test.jsonl

Each run is `commands/train.train_one` in this process (no test scoring, one seed), with the
loop's functions wrapped in timers; the first run of each S only fills a compile cache (the
timed runs read their programs back: warm). Per S, the median over `--repeats` runs of:
  steps/s   updates / the wall of the epochs' step loops (validation passes not included)
  thread    the prefetch thread (overlaps the main thread): build = the stream's batches in
            numpy, stack = `_host_calls` (S > 1), put = `loop._put` (checks, device_put)
  main      the loop's thread: wait = for the prefetch queue, dispatch = the jitted step's call,
            fetch = device_get of the metrics (one call late: waits for the device), loss =
            the logged loss from the sums, window = the log_every lines, record = the rest of
            `StepLog.record`, ckpt = checkpoint checks and saves, other = the loop's remainder
  val       seconds per validation pass (one per epoch), and the run's late compiles
Figures are microseconds per optimizer update (a call of S updates counts S).
"""

from __future__ import annotations

import argparse
import collections
import functools
import importlib.util
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from absl import logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # configs/, gencls_jax

MAIN = ("wait", "dispatch", "fetch", "loss", "window", "record", "ckpt", "other")
THREAD = ("build", "stack", "put")


class Timers:
    """Seconds and counts per component, from any thread."""

    def __init__(self):
        self.lock, self.s = threading.Lock(), collections.Counter()
        self.n = collections.Counter()
        self.active = False  # inside an epoch's step loop (else only 'val' and 'epoch' count)

    def add(self, name: str, dt: float) -> None:
        if not self.active and name not in ("val", "epoch"):
            return  # e.g. a validation pass's fetches, outside the epochs' step loops
        with self.lock:
            self.s[name] += dt
            self.n[name] += 1

    def wrap(self, name: str, fn):
        @functools.wraps(fn)
        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.add(name, time.perf_counter() - t0)

        return timed

    def iterate(self, name: str, it):
        """`it`, the time of each next() added to `name`."""
        it = iter(it)
        while True:
            t0 = time.perf_counter()
            try:
                x = next(it)
            except StopIteration:
                return
            finally:
                self.add(name, time.perf_counter() - t0)
            yield x


class _Jax:
    """The jax module, its device_get timed (the loop's and the log's metric fetches)."""

    def __init__(self, jax, timers: Timers):
        self._jax, self.device_get = jax, timers.wrap("fetch", jax.device_get)

    def __getattr__(self, name):
        return getattr(self._jax, name)


def instrument(timers: Timers) -> None:
    """Wrap the loop's components in `timers` (this process, for the runs that follow)."""
    import jax

    from gencls_jax.commands import train as T
    from gencls_jax.training import hooks, loop

    host_calls = loop._host_calls

    def _host_calls(batches, *a):
        return timers.iterate("stack+build", host_calls(timers.iterate("build", batches), *a))

    prefetch = loop.prefetch_to_device
    loop._host_calls = _host_calls
    loop.prefetch_to_device = lambda *a, **k: timers.iterate("wait", prefetch(*a, **k))
    loop._put = timers.wrap("put", loop._put)
    loop._FirstStep.__call__ = timers.wrap("dispatch", loop._FirstStep.__call__)
    loop._epoch = timers.wrap("epoch", _active(timers, loop._epoch))
    loop.jax = hooks.jax = _Jax(jax, timers)
    for name in ("record", "loss", "write_window"):
        setattr(hooks.StepLog, name, timers.wrap(name, getattr(hooks.StepLog, name)))
    hooks.Checkpoints.due = timers.wrap("ckpt", hooks.Checkpoints.due)
    hooks.Checkpoints.save = timers.wrap("ckpt", hooks.Checkpoints.save)
    validation_fn = T.validation_fn

    def timed_validation(*a, **k):
        fn = validation_fn(*a, **k)
        return timers.wrap("val", fn)

    T.validation_fn = timed_validation


def _active(timers: Timers, fn):
    """`fn` with the timers counting while it runs."""

    @functools.wraps(fn)
    def wrapped(*a, **k):
        timers.active = True
        try:
            return fn(*a, **k)
        finally:
            timers.active = False

    return wrapped


def micro_model(config) -> None:
    """A model whose step costs the device next to nothing: 1 layer, width 16, 1,000 ids."""
    from gencls_jax.model import gpt2

    gpt2.SIZES["micro"] = dict(n_layer=1, n_embd=16, n_head=1, n_positions=256)
    with config.unlocked():
        config.model.size, config.model.init, config.model.dtype = "micro", "scratch", "float32"
        config.data.tokenizer = config.data.tokenizer_fallback
        config.data.compact_vocab = 1000


def null_step() -> None:
    """The train step replaced by one that does no device work: the state passes through
    (donated, as the real step's) and the metrics are ones of the real step's shapes, so the
    dispatch, the fetch and the loop's host work stay and the device's share goes (the host's
    ceiling: what steps/s the loop allows at all). The losses it logs mean nothing."""
    import jax
    import jax.numpy as jnp

    from gencls_jax.training import loop
    from gencls_jax.training import step as ts

    real = ts.compiled_train_step

    def compiled(*a):
        tx, step = real(*a)
        jitted = {}

        def for_shape(state, batch):
            key = jax.tree_util.tree_map(jnp.shape, batch)
            key = str(key)
            if key not in jitted:
                shapes = jax.eval_shape(step, state, batch)[1]

                def fn(state, batch):
                    return state, jax.tree_util.tree_map(
                        lambda x: jnp.ones(x.shape, x.dtype), shapes
                    )

                jitted[key] = jax.jit(fn, donate_argnums=0)
            return jitted[key]

        def call(state, batch):
            return for_shape(state, batch)(state, batch)

        return tx, call

    loop.ts.compiled_train_step = compiled


def figures(timers: Timers, summary: dict) -> dict:
    """Microseconds per update by component, steps/s, validation seconds per pass."""
    steps, s, n = int(summary["steps"]), timers.s, timers.n
    loss = s["loss"] - s["loss@window"]  # the window's loss is inside write_window
    main = {
        "wait": s["wait"],
        "dispatch": s["dispatch"],
        "fetch": s["fetch"],
        "loss": loss,
        "window": s["write_window"],
        "record": s["record"] - s["fetch@record"] - loss - s["write_window"],
        "ckpt": s["ckpt"],
    }
    main["other"] = s["epoch"] - sum(main.values())
    us = {k: 1e6 * v / max(steps, 1) for k, v in main.items()}
    us["build"] = 1e6 * s["build"] / max(steps, 1)
    us["stack"] = 1e6 * (s["stack+build"] - s["build"]) / max(steps, 1)
    us["put"] = 1e6 * s["put"] / max(steps, 1)
    phases = summary.get("phases", {}).get("train", {})
    return dict(
        steps=steps,
        steps_per_s=steps / max(s["epoch"], 1e-9),
        us=us,
        val_s=s["val"] / max(n["val"], 1),
        val_passes=n["val"],
        late_compiles=phases.get("late_compiles"),
        loss=summary["final_train_loss"],
        best=summary["best"],
    )


def one_run(config, workdir: Path) -> dict:
    """A timed `train_one` in a fresh workdir."""
    from gencls_jax.commands import train as T
    from gencls_jax.training import hooks

    timers = Timers()
    instrument(timers)
    # the loss inside the log's window and the fetch inside record, told apart from the others
    hooks.StepLog.write_window = _nested(timers, hooks.StepLog.write_window, "loss", "loss@window")
    hooks.StepLog.record = _nested(timers, hooks.StepLog.record, "fetch", "fetch@record")
    try:
        summary = T.train_one(config, workdir)
    finally:
        _restore()
    return figures(timers, summary)


_ORIGINALS: dict = {}


def _save_originals() -> None:
    from gencls_jax.commands import train as T
    from gencls_jax.training import hooks, loop

    _ORIGINALS.update(
        loop={k: getattr(loop, k) for k in ("_host_calls", "prefetch_to_device", "_put", "_epoch")},
        first=loop._FirstStep.__call__,
        jax=loop.jax,
        log={k: getattr(hooks.StepLog, k) for k in ("record", "loss", "write_window")},
        ckpt={k: getattr(hooks.Checkpoints, k) for k in ("due", "save")},
        val=T.validation_fn,
    )


def _restore() -> None:
    from gencls_jax.commands import train as T
    from gencls_jax.training import hooks, loop

    o = _ORIGINALS
    for k, v in o["loop"].items():
        setattr(loop, k, v)
    loop._FirstStep.__call__ = o["first"]
    loop.jax = hooks.jax = o["jax"]
    for k, v in o["log"].items():
        setattr(hooks.StepLog, k, v)
    for k, v in o["ckpt"].items():
        setattr(hooks.Checkpoints, k, v)
    T.validation_fn = o["val"]


def _nested(timers: Timers, fn, inner: str, as_name: str):
    """`fn`, the time its calls spend in `inner` also added to `as_name`."""

    @functools.wraps(fn)
    def wrapped(*a, **k):
        before = timers.s[inner]
        try:
            return fn(*a, **k)
        finally:
            timers.add(as_name, timers.s[inner] - before)

    return wrapped


HEAD = (
    f"{'S':>3s} {'steps':>6s} {'steps/s':>8s} | main: "
    + " ".join(f"{k:>8s}" for k in MAIN)
    + " | thread: "
    + " ".join(f"{k:>6s}" for k in THREAD)
    + f" | {'val_s':>6s} {'late':>4s} {'loss':>9s}"
)


def row(s: int, f: dict) -> str:
    us = f["us"]
    return (
        f"{s:3d} {f['steps']:6d} {f['steps_per_s']:8.1f} |       "
        + " ".join(f"{us[k]:8.0f}" for k in MAIN)
        + " |         "
        + " ".join(f"{us[k]:6.0f}" for k in THREAD)
        + f" | {f['val_s']:6.2f} {f['late_compiles'] or 0:4d} {f['loss']:9.5f}"
    )


def median(runs: list[dict]) -> dict:
    """The run of median steps/s (its components as measured in that run)."""
    ranked = sorted(runs, key=lambda f: f["steps_per_s"])
    return ranked[len(ranked) // 2]


def parse_args() -> tuple[argparse.Namespace, object]:
    """The bench's flags, and the config: --config with the run.py flags after `--`."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/small_set.py")
    ap.add_argument("--per-call", default="1,4,16", help="train.steps_per_call settings")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per setting (median)")
    ap.add_argument("--micro", action="store_true", help="a model of little device work")
    ap.add_argument("--null-step", action="store_true", help="a step of no device work at all")
    ap.add_argument("--tmp", default="", help="folder for workdirs and the compile cache")
    ap.add_argument("--out", default="", help="also write every run's figures here (JSON)")
    ap.add_argument("overrides", nargs="*", help="after --: --config.* flags for every run")
    args = ap.parse_args()
    from gencls_jax import config_keys  # after the sys.path line: the checkout's package

    spec = importlib.util.spec_from_file_location("bench_config", args.config)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # a file, not absl's global --config flag (run.py's)
    config, rest = config_keys.overridden(module.get_config(), [sys.argv[0], *args.overrides])
    if rest[1:]:
        ap.error(f"not --config.* flags: {' '.join(rest[1:])}")
    return args, config


def main() -> None:
    from gencls_jax.system import runtime

    args, config = parse_args()
    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="host_loop_"))
    with config.unlocked():
        config.search.candidates, config.search.ensemble = (), 0
        config.eval.splits = ()
        config.progress_bars = False
        config.compile_cache_dir = str(tmp / "xla")
        config.compile_cache_min_secs = 0.0
    if args.micro:
        micro_model(config)
    if args.null_step:
        null_step()
    runtime.setup(config)  # as run.py: the compile cache
    _save_originals()
    logging.set_verbosity(logging.WARNING)
    print(HEAD, flush=True)
    out = {}
    for s in (int(x) for x in args.per_call.split(",")):
        with config.unlocked():
            config.train.steps_per_call = s
        one_run(config, tmp / f"warmup_{s}")  # fills the compile cache
        runs = [one_run(config, tmp / f"run_{s}_{i}") for i in range(args.repeats)]
        f = median(runs)
        print(row(s, f), f"(steps/s of the runs: {[round(r['steps_per_s'], 1) for r in runs]})")
        out[s] = runs
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
