"""`search.candidates`: a training run that chooses its own hyperparameters on the validation
texts (issue 24).

Candidate 0 is the command's own config; candidate i is that config with the i-th string of
`search.candidates` applied, parsed as the command line parses `--config.KEY=VALUE`. Before
anything is trained every string is checked: a candidate may change how a model is trained
(model.*, train.*, the data.* keys of `SEARCHABLE_DATA`), never what the candidates are compared
on (the validation texts, their labels, `train.best_metric`). Each candidate then trains as an
ordinary run in its own folder under the workdir W (W's lock covers them), validated at every
epoch end as any run is, and nothing else scored (`eval.splits=()`). Its figure is
`train.best_metric` at its best checkpoint, the one that checkpoint was chosen by. The best
figure wins (ties: the lower index) and replaces candidate 0 only if it beats it by more than
`search.min_gain`; the winner's folder then becomes W's run (moved, not copied) and W is
evaluated as any run is (validation and test), its `search` section in train_summary.json and
metrics.json. A workdir holds:

    config.json           during the search the command's own (a plain `train` in W is refused
                          by it); then the winner's, `search.*` included
    search/<i>/           candidate i's run: config.json, checkpoints, train_summary.json, ...
    search/search.json    each finished candidate's figures, then the choice and why

The same command resumes a search cut off anywhere: a finished candidate is skipped, an
interrupted one continues (its own resume), a choice made is not made again, and a finished
search is W's ordinary run ("already trained": evaluated again).

With `search.ensemble` = K > 1 the search keeps the K best figures (ties: the lower index; no
`search.min_gain`: there is no single winner to protect candidate 0 from) and W becomes their
ensemble: the kept runs stay in search/<i>/ as its members and W is evaluated as `--mode=eval
--workdirs=<them> --workdir=W` evaluates one (`commands/ensemble.py`: the mean of their
log-likelihoods, on val and test, with the command's eval settings), its run_info.json naming
them, so predict and `GenerativeClassifier.load(W)` use the ensemble. search.json records
`kept`; the same command on a finished one evaluates it again. The candidates are then members
of one ensemble: none may change the task (`ensemble.TASK_KEYS`) or mix a classification
head's posteriors with log-likelihoods.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import jax
import ml_collections
from absl import flags, logging

from gencls_jax import conditioning, config_keys
from gencls_jax.commands import ensemble, preflight
from gencls_jax.errors import DataError, RunError
from gencls_jax.runs import rules
from gencls_jax.runs import workdir as wd
from gencls_jax.runs.checkpoint import metric_mode
from gencls_jax.scoring import ngram
from gencls_jax.system import fileio

FOLDER, RECORD = "search", "search.json"
# the data.* keys a candidate may change: they leave the validation texts and labels as they are
SEARCHABLE_DATA = (
    "data.batching",
    "data.bucket_lengths",
    "data.extra_train_path",
    "data.label_prefix_template",
    "data.max_len",
    "data.long_text",
    "data.window_stride",
    "data.compact_vocab",
    "data.append_eos",
)
# ... of which these change the tokens a validation loss is the mean over
TOKEN_KEYS = (
    "data.max_len",
    "data.long_text",
    "data.window_stride",
    "data.compact_vocab",
    "data.append_eos",
)
# what may grow on a resumed run: a candidate trained to other values of them trains on
LIMITS = (config_keys.GROWS, config_keys.LIMIT)


class Candidate(NamedTuple):
    index: int  # 0: the command's own config
    overrides: dict  # {dotted key: value}, as parsed
    config: ml_collections.ConfigDict  # the command's config with them


def split_overrides(text: str) -> list[str]:
    """'a=1,b=(2, 3)' -> ['a=1', 'b=(2, 3)']: a comma inside brackets or quotes is a value's."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [p.strip() for p in [*parts, text[start:]] if p.strip()]


def refusal(key: str, config) -> str | None:
    """Why the candidates may not differ in `key` (None: they may): what they are compared on
    must be one thing for all of them, and what cannot change a trained model has nothing to
    choose."""
    kind = config_keys.kind(key)
    if key == "train.best_metric":
        return "it is the figure the candidates are compared on"
    if key.startswith("search."):
        return "it is the search's own setting"
    if kind in (config_keys.EVAL, config_keys.RUNTIME):
        return f"it is an evaluation or runtime setting (kind {kind}, see --help_config)"
    if key == "seed" and int(config.data.split_seed) < 0:
        return (
            "with data.split_seed=-1 the seed also picks the validation texts: fix them with "
            "--config.data.split_seed=N"
        )
    if key.startswith("data.") and key not in SEARCHABLE_DATA:
        return "it changes the validation texts or labels the candidates are compared on"
    if key in ensemble.TASK_KEYS and config.search.ensemble > 1:
        return "with search.ensemble > 1 the kept candidates are one ensemble, runs of one task"
    if key in TOKEN_KEYS and metric_mode(config.train.best_metric) == "min":
        return (
            f"it changes the tokens train.best_metric={config.train.best_metric} is the mean "
            "over (compare the candidates on val_accuracy)"
        )
    if key != "seed" and not key.startswith(("model.", "train.", "data.")):
        return "a candidate changes model.*, train.*, some data.* keys and seed"
    return None


def _parsed(config, text: str) -> Candidate:
    """The candidate of one `search.candidates` string (index not set); RunError naming it."""
    where = f"search.candidates: {text!r}"
    parts = split_overrides(text)
    if not parts:
        raise RunError(f"{where}: no override (candidate 0 is the run's own config)")
    known, keys, argv = rules.flatten(config), [], ["search"]
    for part in parts:
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key:
            raise RunError(f"{where}: {part!r} is not KEY=VALUE")
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {near[0]}?" if near else "--help_config lists them"
            raise RunError(f"{where}: {key} is not a config key ({hint})")
        why = refusal(key, config)
        if why:
            raise RunError(f"{where}: {key} cannot differ between candidates: {why}")
        if key in keys:
            raise RunError(f"{where}: {key} is set twice")
        keys.append(key)
        argv.append(f"--config.{key}={value}")
    cfg = ml_collections.ConfigDict(config.to_dict())
    try:
        cfg, _ = config_keys.overridden(cfg, argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
        raise RunError(f"{where}: {' '.join(str(e).split())}") from None
    flat = rules.flatten(cfg)
    return Candidate(-1, {k: flat[k] for k in keys}, cfg)


def check_ensemble(config) -> int:
    """`search.ensemble`, the number of candidates kept: a whole number >= 1."""
    k = config.search.ensemble
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise RunError(
            f"search.ensemble: the number of candidates kept, a whole number >= 1, got {k!r}"
        )
    return k


def candidates(config) -> list[Candidate]:
    """Candidate 0 (the command's own config) and one per `search.candidates` string, each
    checked before anything is trained: a bad one is a one-line RunError naming it."""
    check_ensemble(config)
    metric = config.train.best_metric
    if not metric:
        raise RunError(
            "search.candidates: train.best_metric='' ranks no checkpoint, and the candidates are "
            "compared on it: set val_accuracy or val_loss"
        )
    out = [Candidate(0, {}, ml_collections.ConfigDict(config.to_dict()))]
    for text in config.search.candidates:
        if not isinstance(text, str):
            raise RunError(f"search.candidates: each is a string 'KEY=VALUE,...', got {text!r}")
        c = _parsed(config, text)._replace(index=len(out))
        same = next((o.index for o in out if not rules.differences(o.config, c.config)), None)
        if same is not None:
            raise RunError(f"search.candidates: {text!r} is candidate {same}'s config again")
        out.append(c)
    for c in out:
        try:
            _check_trainable(c.config, metric)
            if config.search.ensemble > 1:
                _check_averageable(c.config, config)
        except (RunError, DataError) as e:
            raise type(e)(f"search: candidate {c.index} ({describe(c.overrides)}): {e}") from None
    return out


def _check_averageable(config, base) -> None:
    """An ensemble averages log p(text | c): a classification head's posteriors do not mix with
    them (`ensemble.check_same_task`)."""
    kinds = [conditioning.get(c.model.conditioning).generative for c in (config, base)]
    if kinds[0] != kinds[1]:
        raise RunError(
            "with search.ensemble > 1 the kept candidates are averaged, and a generative run's "
            "log-likelihoods do not mix with a classification head's posteriors"
        )


def _check_trainable(config, metric: str) -> None:
    """What a candidate's run checks first (its paths: a model.init, say), and that it has
    `metric` to be compared on."""
    cond = conditioning.get(config.model.conditioning)
    figures = {"val_loss"} if cond.generative else set()
    figures |= {"val_accuracy", "val_decision_loss"} if cond.classifies else set()
    if metric not in figures:
        raise RunError(
            f"a model.conditioning={cond.name} run has no {metric} (train.best_metric) to be "
            "compared on"
        )
    preflight.check_paths(config, "train")


def describe(overrides: dict) -> str:
    """A candidate as the logs, the reason and report.md name it."""
    return ", ".join(f"{k}={v}" for k, v in overrides.items()) or "the run's own config"


def choose(
    values: Sequence[float | None], names: Sequence[str], metric: str, min_gain: float
) -> tuple[int, str]:
    """(the index kept, why): the best of `values` (`metric`'s: higher accuracy, lower loss;
    ties go to the lower index; None: not compared), which replaces candidate 0 only if it
    beats it by more than `min_gain`."""
    if values[0] is None:
        raise RunError(
            f"search: candidate 0 recorded no {metric} (its training ended before its first "
            "validation?): the candidates cannot be compared"
        )
    sign = 1.0 if metric_mode(metric) == "max" else -1.0
    gains = [None if v is None else sign * (v - values[0]) for v in values]
    best = max((i for i, g in enumerate(gains) if g is not None), key=lambda i: (gains[i], -i))
    base = f"{metric} {values[0]:.4f}"
    if best == 0:
        return 0, f"kept candidate 0 (the run's own config): no candidate beat its {base}"
    figures = f"{metric} {values[best]:.4f} against {values[0]:.4f}, a gain of {gains[best]:+.4f}"
    if gains[best] <= min_gain:
        return 0, (
            f"kept candidate 0 (the run's own config): the best, candidate {best} "
            f"({names[best]}), has {figures} <= search.min_gain {min_gain:g}"
        )
    return best, f"chose candidate {best} ({names[best]}): {figures} > search.min_gain {min_gain:g}"


def keep_best(
    values: Sequence[float | None], names: Sequence[str], metric: str, k: int
) -> tuple[list[int], str]:
    """(the indices kept, best first; why): the `k` best of `values` (`metric`'s: higher
    accuracy, lower loss; ties go to the lower index; None: never kept), all of those with a
    figure when fewer than `k` have one. No search.min_gain: an ensemble keeps several."""
    sign = 1.0 if metric_mode(metric) == "max" else -1.0
    valid = [i for i, v in enumerate(values) if v is not None]
    if not valid:
        raise RunError(f"search: no candidate recorded a {metric}: none can be kept")
    kept = sorted(valid, key=lambda i: (-sign * values[i], i))[:k]
    figures = ", ".join(f"{i} ({names[i]}) {values[i]:.4f}" for i in kept)
    short = "" if len(valid) >= k else f" (only {len(valid)} recorded a {metric})"
    return kept, (
        f"kept {len(kept)} of {len(values)} candidates as an ensemble (search.ensemble={k}"
        f"{short}), by {metric}: {figures}"
    )


def _read(folder: Path) -> dict:
    path = folder / RECORD
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise RunError(f"{path} does not load ({type(e).__name__}: {e})") from None


def _write(folder: Path, record: dict) -> None:
    if wd.is_lead():
        folder.mkdir(parents=True, exist_ok=True)
        fileio.write_text(folder / RECORD, json.dumps(record, indent=2, default=str))


def trained_to(config) -> dict:
    """The values of the keys a resumed run may raise (epochs, step limits): a candidate
    trained to others trains on."""
    return {k: v for k, v in rules.flatten(config).items() if config_keys.kind(k) in LIMITS}


def _row(c: Candidate, out: dict) -> dict:
    """search.json's line for a candidate whose training `out` (train_one's summary) ended."""
    return dict(
        index=c.index,
        overrides=c.overrides,
        value=out.get("best"),
        steps=out.get("steps"),
        best_step=out.get("best_step"),
        stop_reason=out.get("stop_reason"),
        train_wall_s=out.get("train_wall_s"),
        trained_to=trained_to(c.config),
    )


def _as_candidate(config) -> ml_collections.ConfigDict:
    """A candidate's own run: evaluated on the validation texts only (its metrics.json and
    report.md say how it classifies them); the test texts are scored once, for the winner, in
    W."""
    cfg = ml_collections.ConfigDict(config.to_dict())
    cfg.eval.splits = tuple(s for s in config.eval.splits if s == "val")
    return cfg


def _train_candidates(config, workdir: Path, cands: list[Candidate], train_one) -> dict:
    """Train every candidate not trained yet in W/search/<i>/, then choose: the record with
    `chosen` and `reason`, or train_one's summary of an interrupted candidate."""
    folder, n = workdir / FOLDER, len(cands)
    rules.check_resume(workdir, config)  # W holds this search, or nothing
    if wd.is_lead():
        workdir.mkdir(parents=True, exist_ok=True)
        fileio.write_text(workdir / "config.json", config.to_json_best_effort(indent=2))
    record = _read(folder)
    rows = {r["index"]: r for r in record.get("candidates", [])}
    for c in cands:
        row = rows.get(c.index)
        what = f"candidate {c.index} ({c.index + 1} of {n}: {describe(c.overrides)})"
        if row is not None and row["trained_to"] == trained_to(c.config):
            logging.info("search: %s trained already (%s): skipped", what, row["stop_reason"])
            continue
        logging.info("search: training %s in %s", what, folder / str(c.index))
        out = train_one(_as_candidate(c.config), folder / str(c.index))
        if out["stop_reason"] == "interrupted":
            logging.info("search: interrupted in %s; the same command resumes the search", what)
            return out
        rows[c.index] = _row(c, out)
        logging.info(
            "search: %s ended (%s): %s %s",
            what,
            out["stop_reason"],
            config.train.best_metric,
            "none" if out.get("best") is None else f"{out['best']:.4f}",
        )
        _write(folder, dict(record, candidates=[rows[i] for i in sorted(rows)]))
    metric, min_gain = config.train.best_metric, float(config.search.min_gain)
    values, names = [rows[c.index]["value"] for c in cands], [describe(c.overrides) for c in cands]
    k, table = int(config.search.ensemble), [rows[c.index] for c in cands]
    if k > 1:
        kept, reason = keep_best(values, names, metric, k)
        if len(kept) < k:
            logging.warning("search: %s", reason)
        record = dict(metric=metric, ensemble=k, candidates=table, kept=kept, reason=reason)
    else:
        chosen, reason = choose(values, names, metric, min_gain)
        record = dict(
            metric=metric, min_gain=min_gain, candidates=table, chosen=chosen, reason=reason
        )
    _write(folder, record)  # before the winner's folder moves: a move cut short is finished
    return record


def adopt(src: Path, dst: Path) -> None:
    """The winner's run, moved from `src` into `dst` entry by entry (each a rename: a move cut
    short is finished by the next call); `dst`'s config.json, the search's, is replaced."""
    if not src.is_dir():
        return
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if target.exists() and (target.is_dir() or entry.is_dir()):
            raise RunError(
                f"{target} exists: {dst} holds files of another run; search in a new one"
            )
        os.replace(entry, target)
    src.rmdir()


def drop_losers(folder: Path, record: dict) -> None:
    """The losing (not kept) candidates' checkpoints, exports and n-gram counts deleted (their
    small files and figures stay): a gpt2 candidate's are gigabytes."""
    dropped, kept = [], record.get("kept", [record.get("chosen")])
    for row in record["candidates"]:
        here = folder / str(row["index"])
        heavy = [here / n for n in ("checkpoints", "checkpoints_damaged", "export")]
        heavy.append(here / ngram.COUNTS_FILE)
        if row["index"] not in kept and any(p.exists() for p in heavy):
            for p in heavy:
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink(missing_ok=True)
            dropped.append(str(row["index"]))
    if dropped:
        logging.info(
            "search: deleted the checkpoints and exports of candidate(s) %s "
            "(search.keep_candidates=False)",
            ", ".join(dropped),
        )


def _note_in_summary(workdir: Path, record: dict) -> None:
    """W's train_summary.json (the winner's) gets the search's record: train and eval carry it
    into metrics.json and report.md."""
    path = workdir / "train_summary.json"
    if wd.is_lead() and path.exists():
        summary = json.loads(path.read_text())
        fileio.write_text(path, json.dumps({**summary, "search": record}, indent=2))


def train_best(config, workdir: Path, train_one: Callable[..., dict]) -> dict:
    """`--mode=train` with `search.candidates`: the candidates trained (or their training
    resumed) by `train_one` (commands/train.py's, passed in: it dispatches here), the best
    chosen, moved into `workdir` and evaluated there as its run. Returns that run's summary, or
    an interrupted candidate's."""
    cands = candidates(config)
    folder = workdir / FOLDER
    record = _read(folder)
    if record.get("chosen") is None and record.get("kept") is None:
        record = _train_candidates(config, workdir, cands, train_one)
        if "chosen" not in record and "kept" not in record:  # a candidate was interrupted
            return record
    if "kept" in record:
        return evaluate_kept(config, workdir, len(cands), record)
    if record["chosen"] >= len(cands):
        raise RunError(
            f"{workdir}'s search chose candidate {record['chosen']} of another search.candidates; "
            "use another --workdir"
        )
    logging.info("search: %s", record["reason"])
    if wd.is_lead():
        adopt(folder / str(record["chosen"]), workdir)
        if not config.search.keep_candidates:
            drop_losers(folder, record)
        _note_in_summary(workdir, record)
    if jax.process_count() > 1:  # the others read W's run once process 0 has moved it there
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("search: the winner is in the workdir")
    return train_one(cands[record["chosen"]].config, workdir)


def evaluate_kept(config, workdir: Path, n: int, record: dict) -> dict:
    """search.ensemble > 1: the kept candidates, left in W/search/<i>/, evaluated in W as
    `--mode=eval --workdirs` evaluates an ensemble (with the command's eval settings; the search
    record in metrics.json), again on every call of the same command."""
    saved = rules.saved_config(workdir)
    diff = rules.differences(saved, config) if saved is not None else {}
    bad = sorted(
        k for k in diff if config_keys.kind(k) not in (config_keys.EVAL, config_keys.RUNTIME)
    )
    if bad or max(record["kept"]) >= n:
        raise RunError(
            f"{workdir} holds the ensemble of a search with another config "
            f"({', '.join(bad) or 'search.candidates'}): use another --workdir"
        )
    logging.info("search: %s", record["reason"])
    if wd.is_lead() and not config.search.keep_candidates:
        drop_losers(workdir / FOLDER, record)
    members = [str(workdir / FOLDER / str(i)) for i in record["kept"]]
    out = ensemble.evaluate_ensemble(members, workdir, config=config, search=record)
    return {**out, "members": members}
