"""Process set-up, done once by run.py before any JAX work: the compilation cache and, for
multi-host runs, JAX's distributed runtime. Library code (training, scoring, the classifier)
never changes process-wide state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax


def setup(config: Any) -> None:
    """Everything a run needs of the process, from `config` (a second call is a no-op)."""
    setup_compilation_cache(config)
    setup_distributed(config)


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


def setup_distributed(config: Any) -> None:
    """`jax.distributed.initialize()` when `train.distributed` is set."""
    global _DISTRIBUTED_READY
    if config.train.distributed and not _DISTRIBUTED_READY:
        jax.distributed.initialize()
        _DISTRIBUTED_READY = True
