"""Compile ahead: every program a run will need, lowered and compiled in parallel before its
first step, instead of one stall per shape the first time the shape is met (the train step of
each bucket during the first epoch, every scoring bucket at the first validation pass).

XLA compiles outside the GIL, so a thread pool compiles N programs in about the time of the
slowest few. `jit(f).lower(args).compile()` with the arguments a later call will have (shapes,
dtypes, shardings, static arguments) leaves jit's own cache warm: the call then runs without
compiling (tests/test_ahead.py counts the compilations after the first step: none). With the
persistent cache (`compile_cache_dir`) a warm run reads the programs back in parallel too.
"""

from __future__ import annotations

import concurrent.futures
import os
import time
from typing import Any, Callable, Sequence

from absl import logging

MAX_AUTO_THREADS = 16  # `compile_ahead_threads=-1`: one thread per core, at most this many

Program = Callable[[], Any]  # lowers and compiles one program


def num_threads(config: Any) -> int:
    """`compile_ahead_threads`, -1 resolved to the machine's cores; 0 = off."""
    n = int(config.compile_ahead_threads)
    return min(os.cpu_count() or 1, MAX_AUTO_THREADS) if n < 0 else n


def compile_all(programs: Sequence[Program], threads: int) -> dict[str, float]:
    """Run every program's compilation on `threads` threads; {programs, seconds, threads}. An
    error in one (or Ctrl-C) cancels those not started and is raised here."""
    t0 = time.perf_counter()
    threads = max(1, min(threads, len(programs)))
    pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="compile_ahead")
    try:
        for future in [pool.submit(p) for p in programs]:
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    seconds = time.perf_counter() - t0
    logging.info(
        "compiled %d programs ahead in %.1f s (%d threads)", len(programs), seconds, threads
    )
    return dict(programs=len(programs), seconds=seconds, threads=threads)
