"""What a run holds later commands to: the config it was trained with, and its data.

A trained model is only meaningful with the data and settings that made it, so a workdir keeps
them (`config.json`, the data files' sha256 in `run_info.json`) and every later command is held
to them:
- training in a workdir that already has a run continues that run; a config that would change
  the model (other data, other hyperparameters) is refused before any file is touched, naming
  the differing keys. Settings that cannot change a trained model (logging, progress bars,
  evaluation) may differ, and a run may be continued with more epochs or steps;
- eval, generate, predict and explain use the run's own config; a `--config` given with them may
  change only evaluation and runtime settings, and `data.test_path` (another test set, which
  must use the run's label names);
- which is which is each key's kind, declared with the key in `config_keys.py`;
- a data file the run read whose bytes have changed since is refused by training and eval
  alike: new data under an old name is not the run's data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ml_collections

from gencls_jax import config_keys
from gencls_jax.data.sources import file_source
from gencls_jax.errors import RunError


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
    info = Path(workdir) / "run_info.json"
    if info.exists() and "ensemble" in json.loads(info.read_text()):
        raise ConfigMismatch(f"{workdir} holds an ensemble of runs: train in another --workdir")
    if info.exists() and json.loads(info.read_text()).get("added_classes"):
        raise ConfigMismatch(
            f"{workdir} holds a run made by --mode=add_class (its class models were trained "
            "apart): it cannot be trained further; train a new run in another --workdir"
        )
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
        if p in read and Path(p).is_file() and (new := file_source(p)["sha256"]) != old
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
