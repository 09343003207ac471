"""Training checkpoints with orbax: the train state plus a JSON record of where training was.

Each checkpoint holds two items: `state` (params, optimizer state, step, rng, loss scale; any
pytree of arrays) and `meta` (JSON: epoch, batch index within the epoch, early-stopping
bookkeeping), so a resumed run continues from the exact data position. Orbax writes each step
to a temporary folder and renames it when complete, so an interrupted save never corrupts the
latest good checkpoint. Retention: the latest `keep` checkpoints plus the best one by
`best_metric` (only epoch-end checkpoints carry metrics).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers as cm


def metric_mode(best_metric: str) -> str:
    """'min' for losses, 'max' for anything else (accuracy, F1, ...)."""
    return "min" if best_metric.endswith("loss") else "max"


class Checkpointer:
    """Thin wrapper over `ocp.CheckpointManager` for (state, meta) pairs."""

    def __init__(self, directory: str | Path, keep: int, best_metric: str, async_save: bool = True):
        self.best_metric = best_metric
        policies: list[Any] = [cm.LatestN(max(int(keep), 1))]
        if best_metric:
            policies.append(
                cm.BestN(
                    get_metric_fn=lambda m: m[best_metric],
                    reverse=metric_mode(best_metric) == "min",  # BestN keeps the end of the sorted list
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=cm.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save,
            create=True,
        )
        self.manager = ocp.CheckpointManager(Path(directory).absolute(), options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: Any, meta: dict, metrics: dict | None = None) -> None:
        """Start an (async) save. Re-saving an existing step (e.g. a resumed run reaching the
        epoch end it was interrupted at) replaces it, so the epoch-end metrics are attached."""
        # Keep only the tracked metric: orbax wants a tree of scalars, and others are irrelevant.
        if metrics is not None:
            metrics = {k: float(v) for k, v in metrics.items() if k == self.best_metric}
            metrics = metrics or None
        if step in self.manager.all_steps():
            self.manager.wait_until_finished()
            logging.info("replacing checkpoint at step %d", step)
            self.manager.delete(step)
        self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            metrics=metrics,
            force=True,
        )

    def restore(self, step: int, like_state: Any) -> tuple[Any, dict]:
        """Restore into the structure, dtypes and shardings of `like_state`."""
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like_state)
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()),
        )
        return out.state, dict(out.meta)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
