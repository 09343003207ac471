"""What a person watches while a run works: progress bars (with ETA) and one-line logs.

absl's log lines go through tqdm (`route_logging_through_progress_bars`, once per process), so
an open bar is cleared, the line printed, and the bar redrawn below it.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable

from absl import logging


class _TqdmStream:
    """A stream for absl's log lines that writes through `tqdm.write`: an open progress bar is
    cleared, the line printed, and the bar redrawn below it (instead of the two overwriting
    each other in a terminal)."""

    def write(self, text: str) -> None:
        from tqdm.auto import tqdm

        tqdm.write(text, end="", file=sys.stderr)

    def flush(self) -> None:
        sys.stderr.flush()

    def close(self) -> None:  # stderr is not ours to close
        self.flush()


def route_logging_through_progress_bars() -> None:
    """Send absl's log lines through tqdm (run.py calls this once; harmless without bars)."""
    logging.get_absl_handler().python_handler.stream = _TqdmStream()


def progress_bar(total: int, initial: int, epoch: int, enabled: bool) -> Any:
    """A tqdm bar for one epoch (tqdm supplies the ETA); a no-op object when disabled."""
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=f"epoch {epoch}", unit="step", dynamic_ncols=True
    )


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, *a, **k) -> None: ...
    def close(self) -> None: ...


def log_line(step: int, values: dict[str, float], keys: Iterable[str]) -> None:
    logging.info(
        "step %d: %s", step, ", ".join(f"{k}={values[k]:.4g}" for k in keys if k in values)
    )
