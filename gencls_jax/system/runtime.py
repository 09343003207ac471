"""Process set-up, done once by run.py before any JAX work: JAX's multi-controller runtime (one
process per host, each driving all of its local devices) and the compilation cache. Library
code (training, scoring, the classifier) never changes process-wide state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
from absl import logging


def setup(
    config: Any, coordinator_address: str = "", num_processes: int = 0, process_id: int = -1
) -> None:
    """Everything a run needs of the process (a second call is a no-op)."""
    setup_distributed(config, coordinator_address, num_processes, process_id)
    setup_compilation_cache(config)


def setup_compilation_cache(config: Any) -> None:
    """JAX's persistent compilation cache at `config.compile_cache_dir` ('' = off)."""
    if config.compile_cache_dir:
        jax.config.update(
            "jax_compilation_cache_dir", str(Path(config.compile_cache_dir).expanduser())
        )
        jax.config.update(
            "jax_persistent_cache_min_compile_time_secs", float(config.compile_cache_min_secs)
        )


_DISTRIBUTED_READY = False


def setup_distributed(
    config: Any, coordinator_address: str = "", num_processes: int = 0, process_id: int = -1
) -> None:
    """`jax.distributed.initialize`: with an explicit coordinator (any launcher, tests), or with
    no arguments when `train.distributed` is set and JAX detects the cluster itself (TPU pods,
    SLURM, Open MPI). A process that stops answering makes the others fail within
    `heartbeat_timeout_s` instead of hanging. CPU processes talk through gloo."""
    global _DISTRIBUTED_READY
    if _DISTRIBUTED_READY or not (coordinator_address or config.train.distributed):
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU only; GPUs use NCCL
    timeouts = dict(
        heartbeat_timeout_seconds=int(config.heartbeat_timeout_s),
        initialization_timeout=int(config.heartbeat_timeout_s) * 3,
    )
    if coordinator_address:
        jax.distributed.initialize(coordinator_address, num_processes, process_id, **timeouts)
    else:
        jax.distributed.initialize(**timeouts)
    _DISTRIBUTED_READY = True
    logging.info(
        "process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
