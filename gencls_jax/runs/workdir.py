"""What a workdir holds, as files: the run's description, every command run in it, provenance.

- `run_info.json`: what the run is (label names, conditioning, architecture, class counts, the
  data files it read with their sha256);
- `history.jsonl`: one line per command run in the workdir (train, eval, generate, predict,
  explain): when, which mode, the code's git revision, what changed;
- only process 0 writes a workdir's files (`is_lead`).
The rules that hold later commands to the run are `runs/rules.py`; loading a trained run is
`runs/load.py`; one writer at a time, `runs/lock.py`.
"""

from __future__ import annotations

import datetime
import functools
import json
import subprocess
from pathlib import Path
from typing import Any

import jax
from absl import logging

from gencls_jax.errors import RunError
from gencls_jax.scoring import ngram
from gencls_jax.system import fileio

REPO = Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=1)
def git_revision() -> str:
    """The code's git revision ('+dirty' with uncommitted changes), or 'unknown' outside a
    checkout."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def is_lead() -> bool:
    """Only process 0 writes a workdir's files (config, history, metrics, reports, exports); the
    other processes of a multi-process run compute with it and write nothing."""
    return jax.process_index() == 0


def append_history(
    workdir: str | Path, mode: str, changes: dict | None = None, **extra: Any
) -> None:
    """One line in `history.jsonl` per command run in the workdir."""
    record = {
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
        "mode": mode,
        "git_revision": git_revision(),
        **extra,
    }
    if changes:
        record["changed"] = {k: [old, new] for k, (old, new) in changes.items()}
    if is_lead():  # one write of a whole line: no lock needed (predict and explain take none)
        fileio.append_line(Path(workdir) / "history.jsonl", json.dumps(record, default=str))


def note_read(workdir: str | Path, mode: str, which: str, source: str, **extra: Any) -> None:
    """Predict's and explain's line in the run's history.jsonl: one append, without the lock
    (they only read the workdir); a workdir they may not write to is read all the same."""
    try:
        append_history(workdir, mode, checkpoint=which, input=source, **extra)
    except OSError as e:
        logging.warning("%s: history.jsonl not written (%s)", workdir, e.strerror)


def write_run_info(workdir: Path, info: dict) -> None:
    """Record what the run is (label names, conditioning, architecture, class counts); the
    config check (`rules.check_resume`) has already refused a workdir made by another config."""
    if is_lead():
        workdir.mkdir(parents=True, exist_ok=True)
        fileio.write_text(workdir / "run_info.json", json.dumps(info, indent=2))


def read_run_info(workdir: Path) -> dict:
    path = Path(workdir) / "run_info.json"
    if not path.exists():
        raise RunError(
            f"{workdir} has no run_info.json: no run was trained there (run --mode=train first)"
        )
    return json.loads(path.read_text())


def saved_fits(workdir: str | Path) -> dict:
    """What eval fitted on the validation texts, from a workdir's metrics.json (None where it
    fitted nothing, or wrote no metrics.json): the calibrated rule's `offsets`, the posteriors'
    `temperatures` per rule ({} if none), the `ood_threshold` and the `ood_keep` it keeps, and
    the n-gram expert's settings (`ngram`, None when off or at weight 0) with its counts."""
    path = Path(workdir) / "metrics.json"
    metrics = json.loads(path.read_text()) if path.exists() else {}
    ood = metrics.get("ood") or {}
    expert = metrics.get("ngram") if (metrics.get("ngram") or {}).get("weight") else None
    counts = Path(workdir) / ngram.COUNTS_FILE
    if expert is not None and not counts.exists():
        raise RunError(f"{counts} is missing (the n-gram expert's counts): run --mode=eval again")
    return dict(
        ngram=expert,
        ngram_counts=ngram.load(counts) if expert is not None else None,
        offsets=metrics.get("offsets"),
        temperatures=(metrics.get("calibration") or {}).get("temperatures") or {},
        ood_threshold=ood.get("threshold"),
        ood_keep=ood.get("keep"),
    )
