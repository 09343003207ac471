"""Where arrays live: the device mesh, and how batches and states are laid out on it.

One mesh over all devices of all processes, with two axes: 'class' (the K stacked class models
split over devices, `train.class_shards` groups; 1 = every device holds every model) and 'data'
(the rows of a batch). JAX's multi-controller runtime does the rest: every process runs the
same program, feeds only its own rows of each global batch (`shard_batch`), and XLA inserts the
collectives. Pure JAX, no optimizer: training, scoring and the classifier API share it.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

Batch = Mapping[str, Any]


def make_mesh(class_shards: int = 1) -> Mesh:
    """('class', 'data') mesh over all (global) devices; devices are ordered by process, so
    each process's devices hold a contiguous block of every batch's rows."""
    devs = np.asarray(jax.devices())
    if class_shards < 1 or devs.size % class_shards:
        raise ValueError(f"train.class_shards={class_shards} must divide the {devs.size} devices")
    return Mesh(devs.reshape(class_shards, devs.size // class_shards), ("class", "data"))


def mesh_of(tree: Any) -> Mesh | None:
    """The mesh a tree's arrays are laid out on (e.g. class-sharded params), or None."""
    leaves = jax.tree_util.tree_leaves(tree)
    s = getattr(leaves[0], "sharding", None) if leaves else None
    return s.mesh if isinstance(s, NamedSharding) and isinstance(s.mesh, Mesh) else None


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def put_replicated(mesh: Mesh, tree: Any) -> Any:
    """Host values (the same on every process) -> global arrays replicated on the mesh."""
    sharding = replicated(mesh)
    return jax.tree_util.tree_map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree
    )


def rows_sharding(mesh: Mesh, leading: int = 0) -> NamedSharding:
    """Arrays whose axis `leading` is the row axis B (split over 'data'); a leading class axis
    (leading = 1) is split over 'class'."""
    return NamedSharding(mesh, P(*(("class",) * leading), "data"))


def batch_shardings(mesh: Mesh, batch: Batch, steps: bool = False) -> dict[str, NamedSharding]:
    """Per array of a batch: [B, T] rows, [K, B, T] class-stacked or sliced rows, `labels` [B];
    `steps`: each with a leading axis of stacked steps first, not split."""
    lead = int(steps)
    out = {}
    for k, v in batch.items():
        spec = rows_sharding(mesh, 0 if k == "labels" else np.ndim(v) - 2 - lead).spec
        out[k] = NamedSharding(mesh, P(*(None,) * lead, *spec))
    return out


def local_rows(name: str, x: np.ndarray) -> np.ndarray:
    """This process's block of a global batch's rows (the row axis is the second-to-last of a
    token array, the last of `labels`): every process builds the same global batch and
    feeds its own part, so the order of examples does not depend on the process count."""
    n = jax.process_count()
    if n == 1:
        return x
    axis = x.ndim - (1 if name == "labels" else 2)
    rows = x.shape[axis]
    if rows % n:
        raise ValueError(f"{rows} rows per batch do not split over {n} processes")
    k = rows // n
    return np.take(x, np.arange(jax.process_index() * k, (jax.process_index() + 1) * k), axis=axis)


def shard_batch(batch: Batch, mesh: Mesh, steps: bool = False) -> dict:
    """Host numpy global batch -> global sharded jax arrays, from this process's rows only
    (`steps`: a leading axis of stacked steps, `batch_shardings`)."""
    shardings = batch_shardings(mesh, batch, steps)
    local = {k: local_rows(k, np.asarray(v)) for k, v in batch.items()}
    return jax.make_array_from_process_local_data(shardings, local)  # the tree: one transfer


def state_shardings(mesh: Mesh, state: Any, stacked: bool, fsdp: bool = False) -> Any:
    """A train state's shardings: class-stacked fields (params, optimizer state, loss scale,
    skip counters, the moving average of params) split over 'class' on their leading axis;
    step and rng replicated. With `fsdp` (`train.fsdp`), params, their average and optimizer
    state are also split over 'data' (FSDP-style: each device of a group holds 1/n of every
    weight; XLA gathers a layer's weights for its matmuls and reduce-scatters its gradients),
    for models whose params, grads and Adam moments do not fit one device."""

    def leaf(x, lead: tuple) -> NamedSharding:
        n = mesh.shape["data"]
        if fsdp and n > 1:  # the largest axis (after the class axis) that splits evenly
            axes = [(x.shape[i], i) for i in range(len(lead), np.ndim(x)) if x.shape[i] % n == 0]
            if axes:
                spec: list = [*lead] + [None] * (np.ndim(x) - len(lead))
                spec[max(axes)[1]] = "data"
                return NamedSharding(mesh, P(*spec))
        return NamedSharding(mesh, P(*lead))

    def field(name: str, value: Any) -> Any:
        if name in ("step", "rng"):
            return jax.tree_util.tree_map(lambda _: replicated(mesh), value)
        lead = ("class",) if stacked else ()
        if name in ("params", "opt_state", "average"):
            return jax.tree_util.tree_map(lambda x: leaf(x, lead), value)
        return jax.tree_util.tree_map(lambda _: NamedSharding(mesh, P(*lead)), value)

    return type(state)(*(field(f, v) for f, v in zip(state._fields, state)))


def to_host(x: Any) -> np.ndarray:
    """A (possibly process-spanning) array as one numpy array on every process."""
    if jax.process_count() > 1 and not x.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
