"""Where a run's time goes: wall and CPU seconds of each phase (data, train, score), and the
seconds JAX spent compiling (tracing, lowering, XLA) inside them, so a slow first run can be
read: a cold run compiles every shape and tokenizes every text; a warm one reads both from its
caches (`compile_cache_dir`, `data.cache_dir`).
"""

from __future__ import annotations

import contextlib
import time

from absl import logging

# JAX's own duration events (jax.monitoring) of one compilation: trace, lower, XLA compile
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


class PhaseTimer:
    """`with timer.phase('train'): ...` records that phase's wall and CPU seconds and the compile
    seconds inside it; `timer.table()` is {phase: {wall_s, cpu_s, compile_s}}."""

    _compile_s = 0.0  # every compilation of this process, since the listener was registered
    _listening = False

    def __init__(self):
        self.phases: dict[str, dict[str, float]] = {}
        PhaseTimer._listen()

    @classmethod
    def _listen(cls) -> None:
        if cls._listening:
            return
        import jax

        def on_event(event: str, duration: float, **_) -> None:
            if event in COMPILE_EVENTS:
                cls._compile_s += float(duration)

        jax.monitoring.register_event_duration_secs_listener(on_event)
        cls._listening = True

    @contextlib.contextmanager
    def phase(self, name: str):
        wall, cpu, comp = time.perf_counter(), time.process_time(), PhaseTimer._compile_s
        try:
            yield
        finally:
            rec = self.phases.setdefault(name, dict(wall_s=0.0, cpu_s=0.0, compile_s=0.0))
            rec["wall_s"] += time.perf_counter() - wall
            rec["cpu_s"] += time.process_time() - cpu
            rec["compile_s"] += PhaseTimer._compile_s - comp
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
