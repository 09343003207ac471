"""What a training run leaves behind for people: metrics.jsonl, TensorBoard events, a PNG.

`metrics.jsonl` is the source of truth: one JSON object per line with a `step` and any of
train_loss, lr, tokens_per_s, steps_per_s, skipped_steps, loss_scale, val_loss, val_accuracy.
Each line is written whole and flushed (`fileio.append_line`; a torn last line is ignored on
read). A run resumed from a checkpoint first drops the lines past the step it restored (a crash
or an older checkpoint: those steps are trained again), then appends to the same file;
`read_metrics` keeps the last record per (step, kind). TensorBoard events (the finite
scalars of each record) are written beside it by `events.py`, without a writer library.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from gencls_jax.reports import events
from gencls_jax.system import fileio


class MetricsWriter:
    """Append-only metrics log (jsonl) plus TensorBoard scalars (`tensorboard/` in the workdir).
    TensorBoard never stops a run: a write that fails (a full disk) turns it off, and
    metrics.jsonl stays the record."""

    def __init__(self, workdir: str | Path, tensorboard: bool = True, enabled: bool = True):
        self.path = Path(workdir) / "metrics.jsonl"
        self.enabled = enabled
        self.tb: events.EventWriter | None = None
        if enabled and tensorboard:
            try:
                self.tb = events.EventWriter(Path(workdir) / "tensorboard")
            except OSError:
                pass

    def write(self, step: int, kind: str, values: dict[str, float]) -> None:
        """`kind` is 'train' or 'eval' (keeps the two streams apart when reading back)."""
        if not self.enabled:
            return
        values = {k: _jsonable(v) for k, v in values.items()}
        fileio.append_line(self.path, json.dumps({"step": int(step), "kind": kind, **values}))
        if self.tb is not None:
            scalars = {
                f"{kind}/{k}": float(v)
                for k, v in values.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            }
            try:
                self.tb.add(scalars, int(step))
            except OSError:
                self.tb = None

    def drop_after(self, step: int) -> None:
        """Forget the records past `step` (training resumes from `step`: they are stale)."""
        if not self.enabled or not self.path.exists():
            return
        records = fileio.read_jsonl(self.path)
        kept = [r for r in records if r["step"] <= step]
        if len(kept) < len(records):
            fileio.write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def _jsonable(v: Any) -> Any:
    v = float(v) if hasattr(v, "__float__") and not isinstance(v, (int, bool)) else v
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/Inf
    return v


def read_metrics(path: str | Path) -> list[dict]:
    """Records of a metrics.jsonl, sorted by step; a (step, kind) logged twice keeps the last."""
    records = {(r["step"], r.get("kind", "")): r for r in fileio.read_jsonl(path)}
    return [records[k] for k in sorted(records)]


FEW_POINTS = 30  # curves with at most this many points are drawn with markers


def plot_curves(metrics_path: str | Path, png_path: str | Path) -> Path | None:
    """Train/val loss (and val accuracy, if logged) against step, as a PNG."""
    records = read_metrics(metrics_path)
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(kind: str, key: str):
        pts = [
            (r["step"], r[key])
            for r in records
            if r.get("kind") == kind and isinstance(r.get(key), (int, float))
        ]
        return [p[0] for p in pts], [p[1] for p in pts]

    def style(xs) -> str:  # a line alone hides a curve of a few points: mark them
        return "o-" if len(xs) <= FEW_POINTS else "-"

    has_acc = bool(series("eval", "val_accuracy")[0])
    fig, axes = plt.subplots(
        1, 2 if has_acc else 1, figsize=(11 if has_acc else 6, 4), squeeze=False
    )
    ax = axes[0, 0]
    xs, ys = series("train", "train_loss")
    ax.plot(xs, ys, style(xs), label="train loss")
    xs, ys = series("eval", "val_loss")
    if xs:
        ax.plot(xs, ys, "o-", label="val loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.legend()
    if has_acc:
        axes[0, 1].plot(*series("eval", "val_accuracy"), "o-", color="C2")
        axes[0, 1].set_xlabel("step")
        axes[0, 1].set_ylabel("val accuracy")
    fig.tight_layout()
    with fileio.atomic_open(png_path, "wb") as f:
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)
    return Path(png_path)
