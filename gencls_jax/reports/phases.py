"""Where a run's time goes: wall and CPU seconds of each phase (data, model, train, score), and the
seconds JAX spent compiling (tracing, lowering, XLA) inside them, so a slow first run can be
read: a cold run compiles every shape and tokenizes every text; a warm one reads both from its
caches (`compile_cache_dir`, `data.cache_dir`).
"""

from __future__ import annotations

import contextlib
import functools
import time

from absl import logging

# JAX's own duration events (jax.monitoring) of one compilation, and the part each names:
# trace, lower, XLA compile (a persistent-cache hit is counted there too: its read is also
# `cache_read_s`)
COMPILE_EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace_s",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
    "/jax/core/compile/backend_compile_duration": "xla_s",
}
CACHE_READ = "/jax/compilation_cache/cache_retrieval_time_sec"
CACHE_COUNTS = {
    "/jax/compilation_cache/cache_hits": "cache_hits",
    "/jax/compilation_cache/cache_misses": "cache_misses",
}

# every compilation of this process, once listening
_COUNTS = dict.fromkeys(
    ("compile_s", "compiles", *COMPILE_EVENTS.values(), "cache_read_s", *CACHE_COUNTS.values()),
    0,
)


def compile_counts() -> dict[str, float]:
    """JAX's compiling in this process so far, counted from the first call of this function
    (or PhaseTimer): compile_s (trace + lower + XLA seconds) and compiles (XLA compilations),
    and the parts: trace_s, lower_s, xla_s, cache_read_s (persistent-cache reads, inside xla_s),
    cache_hits, cache_misses. Where a warm run's stall goes: tracing and lowering are paid
    again by every process, XLA only on a miss."""
    _listen()
    return dict(_COUNTS)


@functools.cache
def _listen() -> None:
    import jax

    def on_duration(event: str, duration: float, **_) -> None:
        part = COMPILE_EVENTS.get(event)
        if part:
            _COUNTS["compile_s"] += float(duration)
            _COUNTS[part] += float(duration)
            _COUNTS["compiles"] += int(part == "xla_s")
        elif event == CACHE_READ:
            _COUNTS["cache_read_s"] += float(duration)

    def on_event(event: str, **_) -> None:
        if event in CACHE_COUNTS:
            _COUNTS[CACHE_COUNTS[event]] += 1

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)


class PhaseTimer:
    """`with timer.phase('train'): ...` records that phase's wall and CPU seconds, the compile
    seconds and XLA compilations inside it; `timer.table()` is {phase: {wall_s, cpu_s,
    compile_s, compiles, ...}} (`note` adds a phase's own figures, e.g. the training loop's
    first-step stall and late compiles)."""

    def __init__(self):
        self.phases: dict[str, dict[str, float]] = {}
        _listen()

    def note(self, name: str, **values: float) -> None:
        self.phases.setdefault(name, {}).update(values)

    @contextlib.contextmanager
    def phase(self, name: str):
        wall, cpu, comp = time.perf_counter(), time.process_time(), compile_counts()
        try:
            yield
        finally:
            rec = self.phases.setdefault(name, {})
            for k, v in compile_counts().items():
                rec[k] = rec.get(k, 0) + v - comp[k]
            rec["wall_s"] = rec.get("wall_s", 0.0) + time.perf_counter() - wall
            rec["cpu_s"] = rec.get("cpu_s", 0.0) + time.process_time() - cpu
            logging.info("phase %s: %s", name, fmt_phase(rec))

    def table(self) -> dict[str, dict[str, float]]:
        return {k: {m: round(v, 2) for m, v in rec.items()} for k, rec in self.phases.items()}


def fmt_phase(rec: dict) -> str:
    s = f"{rec['wall_s']:.1f} s wall, {rec['cpu_s']:.1f} s CPU"
    return s + (f", of which compiling {rec['compile_s']:.1f} s" if rec.get("compile_s") else "")


def fmt_table(table: dict[str, dict[str, float]]) -> str:
    """One line: 'data 4.1 s, train 120.3 s (compile 9.0 s), score 25.2 s (compile 3.1 s)'."""
    parts = []
    for name, rec in table.items():
        comp = f" (compile {rec['compile_s']:.1f} s)" if rec.get("compile_s", 0) >= 0.05 else ""
        parts.append(f"{name} {rec['wall_s']:.1f} s{comp}")
    return ", ".join(parts)
