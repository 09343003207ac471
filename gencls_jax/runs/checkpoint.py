"""Training checkpoints with orbax: the train state plus a JSON record of where training was.

Each checkpoint holds two items: `state` (params, optimizer state, step, rng, loss scale; any
pytree of arrays) and `meta` (JSON: epoch, batch index within the epoch, early-stopping
bookkeeping), so a resumed run continues from the exact data position. Orbax writes each step
to a temporary folder and renames it when complete, so an interrupted save never corrupts the
latest good checkpoint.

Retention: the latest `keep` checkpoints plus the best one by `best_metric`. The metric is
written *with* each epoch-end checkpoint (orbax does so only when `best_fn` is set), so a new
process, a resumed run or an evaluation finds the best step on disk: without it, orbax's
`best_step()` silently returned the latest step and the BestN policy forgot the true best
after a restart.

A checkpoint that does not restore (a truncated file, say) is reported in one line and the
next candidate is used; it is never deleted (a resuming run moves it to
`checkpoints_damaged/`, out of orbax's way, so that a later save cannot replace it). A restore
returns the sentence that says so, for the run's summary.

Mid-epoch and interruption checkpoints carry no metric (validation runs at epoch ends), and
orbax warns "Requested `tracked_metric`; did not provide metrics." at every such save: that
warning is dropped, and the one case it pointed at, validation metrics without
`best_metric` among them, is said once, in our words.
"""

from __future__ import annotations

import logging as py_logging
import shutil
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers as cm


class RestoreError(RuntimeError):
    """No usable checkpoint: the message says which steps were tried and why they failed."""


class _NoMetricWarning(py_logging.Filter):
    """Drops orbax's warning at every save without metrics (see the module docstring)."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Requested `tracked_metric`")


_NO_METRIC_WARNING = _NoMetricWarning()


def metric_mode(best_metric: str) -> str:
    """'min' for losses, 'max' for anything else (accuracy, F1, ...)."""
    return "min" if best_metric.endswith("loss") else "max"


def _abstract(tree: Any) -> Any:
    return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tree)


def _stored(state: Any) -> Any:
    """What a checkpoint holds of a train state: a NamedTuple's fields by name, those set to
    None (a feature that is off, e.g. the moving average) left out, so a state that grew a field
    still restores the checkpoints written before it."""
    if not hasattr(state, "_asdict"):
        return state
    return {k: v for k, v in state._asdict().items() if v is not None}


def _rebuilt(like_state: Any, stored: Any) -> Any:
    """`_stored`'s inverse, in the type of `like_state` (its None fields stay None)."""
    if not hasattr(like_state, "_asdict"):
        return stored
    return type(like_state)(**{k: stored.get(k) for k in like_state._fields})


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}"


class Checkpointer:
    """Thin wrapper over `ocp.CheckpointManager` for (state, meta) pairs."""

    def __init__(self, directory: str | Path, keep: int, best_metric: str, async_save: bool = True):
        self.directory = Path(directory).absolute()
        self.best_metric = best_metric
        policies: list[Any] = [cm.LatestN(max(int(keep), 1))]
        best: dict[str, Any] = {}
        if best_metric:
            policies.append(
                cm.BestN(
                    get_metric_fn=lambda m: m[best_metric],
                    reverse=metric_mode(best_metric)
                    == "min",  # BestN keeps the end of the sorted list
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
            best = dict(best_fn=lambda m: m[best_metric], best_mode=metric_mode(best_metric))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=cm.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save,
            create=True,
            **best,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        logging.get_absl_logger().addFilter(_NO_METRIC_WARNING)  # once: the same filter object
        self._said_no_metric = False

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """The step with the best saved `best_metric`; the latest step when none carries one."""
        return self.manager.best_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: Any, meta: dict, metrics: dict | None = None) -> None:
        """Start an (async) save. Re-saving an existing step (e.g. a resumed run reaching the
        epoch end it was interrupted at) replaces it, so the epoch-end metrics are attached."""
        # Keep only the tracked metric: orbax wants a tree of scalars, and others are irrelevant.
        if metrics is not None:
            tracked = {k: float(v) for k, v in metrics.items() if k == self.best_metric}
            if self.best_metric and not tracked and not self._said_no_metric:
                self._said_no_metric = True
                logging.warning(
                    "train.best_metric=%r is not among the validation metrics (%s): no checkpoint "
                    "is ranked, the best one is the latest",
                    self.best_metric,
                    ", ".join(sorted(metrics)),
                )
            metrics = tracked or None
        if step in self.manager.all_steps():
            self.manager.wait_until_finished()
            logging.info("replacing checkpoint at step %d", step)
            self.manager.delete(step)
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.PyTreeSave(_stored(state)), meta=ocp.args.JsonSave(meta)
            ),
            metrics=metrics,
            force=True,
        )

    def _candidates(self, which: str | int) -> list[int]:
        """Steps to try, in order: the one asked for, then the others newest first."""
        steps = sorted(self.all_steps(), reverse=True)
        if isinstance(which, int):
            return [which] if which in steps else []
        if which not in ("best", "latest"):
            raise ValueError(f"which must be 'best', 'latest' or a step, got {which!r}")
        first = self.best_step() if which == "best" else self.latest_step()
        return ([first] if first is not None else []) + [s for s in steps if s != first]

    def _restore_first(
        self, which: str | int, restore_one, set_aside_damaged: bool
    ) -> tuple[Any, int, str | None]:
        """(`restore_one(step)`, step, fallback) of the first candidate that restores; damaged
        ones are reported, and `fallback` says in one sentence which were skipped (None if
        none)."""
        tried, kept = [], []
        for step in self._candidates(which):
            try:
                out = restore_one(step)
            except Exception as e:  # orbax/tensorstore/JSON errors of a damaged checkpoint
                tried.append(f"step {step} ({_one_line(e)})")
                where = self._set_aside(step) if set_aside_damaged else self.directory / str(step)
                kept.append(f"step {step} (kept at {where})")
                logging.warning(
                    "checkpoint step %d is damaged and was skipped (%s); it is kept at %s",
                    step,
                    _one_line(e),
                    where,
                )
                continue
            if not tried:
                return out, step, None
            logging.warning(
                "using checkpoint step %d instead of the damaged %s", step, ", ".join(tried)
            )
            skipped = ", ".join(kept)
            return out, step, f"checkpoint step {step} was used instead of the damaged {skipped}"
        if not tried:
            raise RestoreError(f"{self.directory} holds no checkpoint ({which})")
        raise RestoreError(f"{self.directory}: no checkpoint restores; tried {'; '.join(tried)}")

    def _set_aside(self, step: int) -> Path:
        """Move a damaged step out of orbax's folder (kept for inspection, never deleted)."""
        self.manager.wait_until_finished()
        dest = self.directory.parent / f"{self.directory.name}_damaged" / str(step)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            dest = dest.with_name(f"{step}.{len(list(dest.parent.iterdir()))}")
        shutil.move(str(self.directory / str(step)), str(dest))
        self.manager.reload()
        return dest

    def restore(
        self, like_state: Any, which: str | int = "latest", *, set_aside_damaged: bool = False
    ) -> tuple[Any, dict, int, str | None]:
        """(state, meta, step, fallback) of the latest / best / given step, in the structure,
        dtypes and shardings of `like_state`; a damaged step is skipped for the next newest
        (warned; `fallback` says so, else None)."""
        abstract = _abstract(_stored(like_state))
        restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)

        def one(step):
            state = ocp.args.PyTreeRestore(abstract, restore_args=restore_args)
            out = self.manager.restore(
                step, args=ocp.args.Composite(state=state, meta=ocp.args.JsonRestore())
            )
            return _rebuilt(like_state, out.state), dict(out.meta)

        (state, meta), step, fallback = self._restore_first(which, one, set_aside_damaged)
        return state, meta, step, fallback

    def restore_params(
        self, like_params: Any, which: str | int = "best", field: str = "params"
    ) -> tuple[Any, int, str | None]:
        """(params, step, fallback): only the parameters of a saved train state (orbax partial
        restore), so loading a trained model needs no optimizer. `field`: 'params', or
        'average' (the moving average a run with `train.ema_decay` > 0 ships)."""
        abstract = {field: _abstract(like_params)}
        restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)

        def one(step):
            args = ocp.args.PyTreeRestore(abstract, restore_args=restore_args, partial_restore=True)
            return self.manager.restore(step, args=ocp.args.Composite(state=args)).state[field]

        return self._restore_first(which, one, set_aside_damaged=False)

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
