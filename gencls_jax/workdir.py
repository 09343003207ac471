"""What a workdir remembers: the config it was trained with, and every command run in it.

A trained model is only meaningful with the data and settings that made it, so a workdir keeps
them (`config.json`) and the program holds every later command to them:
- training in a workdir that already has a run continues that run; a config that would change
  the model (other data, other hyperparameters) is refused before any file is touched, naming
  the differing keys. Settings that cannot change a trained model (logging, progress bars,
  evaluation) may differ, and a run may be continued with more epochs or steps;
- eval and generate use the run's own config; a `--config` given with them may change only
  evaluation and runtime settings, and `data.test_path` (another test set, which must use
  the run's label names);
- which is which is each key's kind, declared with the key in config_keys.py;
- a data file the run read whose bytes have changed since (sha256, `run_info.json`) is refused
  by training and eval alike: new data under an old name is not the run's data;
- `history.jsonl` records each command: when, which mode, the code's git revision, what changed.
A trained run is loaded from here without the trainer (`load_run`: parameters alone, no optimizer).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any, NamedTuple

import jax
import ml_collections
from absl import logging

from gencls_jax import conditioning, config_keys, fileio, sharding
from gencls_jax import model as gpt2
from gencls_jax.checkpoint import Checkpointer, RestoreError
from gencls_jax.data import compact
from gencls_jax.data.tokenize import Tokenizer, load_tokenizer

REPO = Path(__file__).resolve().parents[1]


class RunError(RuntimeError):
    """A problem with the run as set up (workdir, checkpoint, config): the message says what to
    do."""


class ConfigMismatch(RunError):
    """A command whose config does not fit the run in its workdir; the message names the keys."""


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """{'train.lr': 5e-05, ...} of a ConfigDict or nested dict (tuples as lists, for comparison)."""
    out: dict[str, Any] = {}
    items = config.items() if hasattr(config, "items") else []
    for k, v in items:
        if hasattr(v, "items"):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, (tuple, list)) else v
    return out


def _resumable(key: str, old: Any, new: Any) -> bool:
    """May a run trained with `old` continue with `new` (config_keys.KINDS)?"""
    kind = config_keys.kind(key)
    if kind == config_keys.RUNTIME:
        return True
    if old is None or new is None:  # a key only one of the two configs has
        return False
    if kind == config_keys.GROWS:  # more epochs
        return new >= old
    if kind == config_keys.LIMIT:  # a step limit raised or lifted (0 = none)
        return old > 0 and (new == 0 or new >= old)
    return False


def _fmt(diff: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k} ({old!r} -> {new!r})" for k, (old, new) in diff.items())


def differences(old: Any, new: Any) -> dict[str, tuple[Any, Any]]:
    """{key: (old value, new value)} for every key whose value differs (missing = None)."""
    a, b = flatten(old), flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _merge(into: ml_collections.ConfigDict, values: dict) -> None:
    for k, v in values.items():
        if isinstance(v, dict) and k in into and isinstance(into[k], ml_collections.ConfigDict):
            _merge(into[k], v)
        elif k in into:
            into[k] = tuple(v) if isinstance(into[k], tuple) and isinstance(v, list) else v
        # a key today's code no longer has: dropped


def saved_config(workdir: str | Path) -> ml_collections.ConfigDict | None:
    """The config a run in `workdir` was trained with, on top of today's defaults (an older
    run's config.json lacks the keys added since: they take their declared defaults); None if no
    run."""
    path = Path(workdir) / "config.json"
    if not path.exists():
        return None
    try:
        values = json.loads(path.read_text())
    except ValueError as e:  # cut short or edited by hand
        raise RunError(f"{path} does not load ({type(e).__name__}: {e})") from None
    config = config_keys.defaults()
    _merge(config, values)
    return config


def check_resume(workdir: str | Path, config: Any) -> dict[str, tuple[Any, Any]]:
    """Train mode: the differences between the run in `workdir` and `config` that are allowed
    (runtime settings, more epochs or steps); raise ConfigMismatch, naming the keys, for any
    other, and RunError for a data file changed since the run read it (`check_data`). Nothing
    is written here."""
    saved = saved_config(workdir)
    if saved is None:
        return {}
    diff = differences(saved, config)
    bad = {k: v for k, v in diff.items() if not _resumable(k, *v)}
    if bad:
        raise ConfigMismatch(
            f"{workdir} holds a run trained with another config: {_fmt(bad)}; "
            "use another --workdir "
            "(only settings that cannot change the trained model may differ, "
            "and train.epochs/max_steps may grow)"
        )
    check_data(workdir, config)
    return diff


# the data files a config reads (the run's recorded sha256 of each is compared with the file now)
DATA_PATH_KEYS = ("train_path", "val_path", "test_path", "extra_train_path", "unsup_path")


def check_data(workdir: str | Path, config: Any) -> None:
    """Raise RunError when a data file that `config` reads and the run in `workdir` read
    (`run_info.json`'s `data`: path and sha256 of each) has other bytes now: a file replaced
    under the same name would otherwise silently continue, or be evaluated as, the same run."""
    path = Path(workdir) / "run_info.json"
    recorded = json.loads(path.read_text()).get("data", {}) if path.exists() else {}
    read = {str(Path(config.data[k]).resolve()) for k in DATA_PATH_KEYS if config.data[k]}
    sha = {s["path"]: s["sha256"] for srcs in recorded.values() for s in srcs if "sha256" in s}
    changed = [
        f"{p} (sha256 {old[:12]} -> {new[:12]})"
        for p, old in sha.items()
        if p in read and Path(p).is_file() and (new := file_sha256(p)) != old
    ]
    if changed:
        raise RunError(
            f"data changed since the run in {workdir} read it: {', '.join(changed)}; a run is "
            "continued and evaluated only on the data it was trained with: give new data a new "
            "file name (to train on it: another --workdir; a new test set: "
            "--config.data.test_path=FILE)"
        )


def eval_config(workdir: str | Path, given: Any | None) -> tuple[ml_collections.ConfigDict, dict]:
    """Eval/generate mode: the run's own config, with the keys a `--config` may change taken from
    `given` (evaluation, generation and runtime settings, the compute dtype, `data.test_path`).
    Returns (config, the differences used). Training settings of `given` are ignored; any other
    difference (data, model) raises ConfigMismatch."""
    saved = saved_config(workdir)
    if saved is None:
        raise ConfigMismatch(
            f"{workdir} has no config.json: no run was trained there (run --mode=train first)"
        )
    if given is None:
        return saved, {}
    diff = differences(saved, given)
    used = {
        k: v
        for k, v in diff.items()
        if config_keys.kind(k) in (config_keys.RUNTIME, config_keys.EVAL)
    }
    bad = {k: v for k, v in diff.items() if k not in used and not k.startswith("train.")}
    if bad:
        raise ConfigMismatch(
            f"this --config differs from the run in {workdir} in {_fmt(bad)}; "
            "eval and generate use the run's own config: leave out --config (or these overrides); "
            "another test set: --config.data.test_path=FILE"
        )
    config = ml_collections.ConfigDict(saved.to_dict())
    for key, (_, new) in used.items():
        *path, leaf = key.split(".")
        node = config
        for p in path:
            node = node[p]
        node[leaf] = new
    return config, used


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


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def read_history(workdir: str | Path) -> list[dict]:
    return fileio.read_jsonl(Path(workdir) / "history.jsonl")


# --- the trained run -------------------------------------------------------------------------


def write_run_info(workdir: Path, info: dict) -> None:
    """Record what the run is (label names, conditioning, architecture, class counts); the
    config check (`workdir.check_resume`) has already refused a workdir made by another config."""
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


def model_config_from_info(info: dict) -> gpt2.GPT2Config:
    return gpt2.GPT2Config(**info["model"])


class LoadedRun(NamedTuple):
    """A trained run, ready to score and sample with."""

    info: dict  # run_info.json
    model_config: gpt2.GPT2Config
    params: Any  # per_class: stacked on a leading class axis
    step: int
    tokenizer: Tokenizer  # the run's own ids (data.compact_vocab)
    fallback: str | None  # which damaged checkpoints were skipped, or None


def load_run(
    config, workdir: str | Path, which: str = "best", purpose: str = "classify with"
) -> LoadedRun:
    """A trained class-conditional run's best (or latest) checkpoint: the parameters alone, no
    optimizer (the classifier API loads runs without the trainer). The model's BOS is the run's
    tokenizer's, as in the rows it was trained on: run_info.json of a compact-vocabulary run
    made before issue 28 says GPT-2's 50256, outside its vocabulary."""
    workdir = Path(workdir)
    info = read_run_info(workdir)
    mode = conditioning.get(info["conditioning"])
    if not mode.classifies:
        raise RunError(f"{workdir} holds an {mode.name} LM: it has no classes to {purpose}")
    d = config.data
    tok = compact.for_run(load_tokenizer(d.tokenizer, d.tokenizer_fallback), info)  # its own ids
    model_config = gpt2.resolve_config(model_config_from_info(info), config.model)
    model_config = model_config.replace(bos_token_id=tok.bos_id)
    params, step, fallback = restore_params(
        workdir, mode.params_template(model_config, len(info["label_names"])), which
    )
    return LoadedRun(info, model_config, params, step, tok, fallback)


def restore_params(
    workdir: Path, like_params: Any, which: str = "best"
) -> tuple[Any, int, str | None]:
    """(float32 parameters, step, fallback) of the best (or latest) checkpoint in `workdir`: the
    parameters alone, no optimizer. A damaged checkpoint is skipped with a warning; `fallback`
    says which were (None if none)."""
    ckpt_dir = Path(workdir) / "checkpoints"
    if not ckpt_dir.exists():
        raise RunError(f"{workdir} has no checkpoints yet: train first (--mode=train)")
    rep = sharding.replicated(sharding.make_mesh())  # on every device of every process
    like = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), like_params
    )
    ckpt = Checkpointer(ckpt_dir, keep=1, best_metric=_best_metric(workdir), async_save=False)
    try:
        params, step, fallback = ckpt.restore_params(like, which)
    except RestoreError as e:
        raise RunError(str(e)) from None
    except (ValueError, KeyError) as e:
        raise RunError(
            f"checkpoint {ckpt_dir} does not fit this config's model ({type(e).__name__}); "
            "another model size?"
        ) from None
    finally:
        ckpt.close()
    logging.info("restored step %d (%s) from %s", step, which, ckpt_dir)
    return params, step, fallback


def _best_metric(workdir: Path) -> str:
    """The metric the run chose its best checkpoint by (its own config, not today's defaults)."""
    saved = saved_config(workdir)
    return saved.train.best_metric if saved is not None else ""
