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

# JAX's own duration events (jax.monitoring) of one compilation: trace, lower, XLA compile
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


_COUNTS = {"compile_s": 0.0, "compiles": 0}  # every compilation of this process, once listening


def compile_counts() -> dict[str, float]:
    """{compile_s, compiles}: JAX's compile seconds (trace, lower, XLA) and XLA compilations
    of this process so far, counted from the first call of this function (or PhaseTimer)."""
    _listen()
    return dict(_COUNTS)


@functools.cache
def _listen() -> None:
    import jax

    def on_event(event: str, duration: float, **_) -> None:
        if event in COMPILE_EVENTS:
            _COUNTS["compile_s"] += float(duration)
        if event == COMPILE_EVENTS[-1]:
            _COUNTS["compiles"] += 1

    jax.monitoring.register_event_duration_secs_listener(on_event)


class PhaseTimer:
    """`with timer.phase('train'): ...` records that phase's wall and CPU seconds, the compile
    seconds and XLA compilations inside it; `timer.table()` is {phase: {wall_s, cpu_s,
    compile_s, compiles, ...}} (`note` adds a phase's own figures, e.g. the compile-ahead)."""

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
