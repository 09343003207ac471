"""`--mode=eval`, and the evaluation that ends a training run: score validation and test under
every decision rule, write the predictions, metrics.json and report.md.

Eval uses the run's own config (`runs/rules.eval_config`) and data; another test set
(`data.test_path` changed) is reported in `<workdir>/eval_<file name>-<sha256[:8]>/`, not over
the run's report.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path
from typing import Sequence

from absl import logging

from gencls_jax import conditioning
from gencls_jax.commands import preflight
from gencls_jax.data.splits import per_class_sample
from gencls_jax.reports import report, stats
from gencls_jax.runs import load, rules
from gencls_jax.runs import workdir as wd
from gencls_jax.scoring import decide
from gencls_jax.scoring.batched import score_dataset
from gencls_jax.system import fileio


def read_train_summary(workdir: Path) -> dict:
    path = Path(workdir) / "train_summary.json"
    if not path.exists():
        return {}
    return {k: v for k, v in json.loads(path.read_text()).items() if k != "recent_steps"}


def scored_splits(config, ds: dict) -> dict:
    """The splits eval scores: a seeded sample of train (for the train/validation gap), val and
    test, as `config.eval` asks."""
    splits = {s: ds[s] for s in ("val", "test") if s in config.eval.splits and s in ds}
    if "train" in ds and config.eval.train_sample_per_class > 0:
        idx = per_class_sample(
            ds["train"].labels,
            int(config.eval.train_sample_per_class),
            int(config.seed),
            "train_report",
        )
        splits = {"train_sample": ds["train"].subset(idx), **splits}
    return splits


def evaluate_params(
    config,
    workdir: Path,
    model_config,
    params,
    tok,
    ds,
    info,
    summary=None,
    out_dir: Path | None = None,
) -> dict:
    """Score val and test, decide under every rule, write predictions, metrics.json, report.md
    (into `out_dir`, the workdir by default; another folder is replaced as a whole)."""
    out_dir = Path(out_dir or workdir)
    cond = conditioning.get(info["conditioning"])
    label_names = info["label_names"]
    # The class prior of Bayes' rule; a discriminative head's scores are posteriors already.
    prior = decide.prior_for(cond, info["train_class_counts"])
    scored, timings = {}, {}
    splits = scored_splits(config, ds)
    for split, data in splits.items():
        t0 = time.time()
        ll, n_tok = score_dataset(
            params, cond, data, tok, config, model_config, desc=f"scoring {split}"
        )
        timings[split] = time.time() - t0
        scored[split] = (data, ll, n_tok)
        logging.info(
            "scored %s: %d texts x %d classes in %.1f s",
            split,
            len(data),
            len(label_names),
            timings[split],
        )
    offsets = (
        decide.fit_offsets(scored["val"][1], scored["val"][0].labels) if "val" in scored else None
    )
    rule_names = list(dict.fromkeys([config.eval.decision, *config.eval.report_rules]))
    if not cond.generative:  # a length-normalised log-likelihood has no meaning for posteriors
        rule_names = [r for r in rule_names if r != "per_token"] or ["bayes"]
    results, warnings, predictions = {}, [], {}
    for split, (d, ll, n_tok) in scored.items():
        results[split] = stats.evaluate_split(
            ll,
            d.labels,
            n_tok,
            label_names,
            prior,
            offsets,
            rule_names,
            int(config.eval.sample_per_class) if split == "test" else 0,
            int(config.seed),
        )
        pred = decide.scores(ll, n_tok, "bayes", prior).argmax(1)
        predictions[split] = (d, ll, n_tok, pred)
        margin = float(config.eval.degenerate_margin_ratio)
        warning = stats.degenerate_warning(
            ll, d.labels, pred, label_names, margin_ratio=margin, split=split
        )
        if warning:
            logging.warning("%s", warning)
            warnings.append(warning)
    out = dict(
        decision=config.eval.decision,
        prior=prior.tolist(),
        offsets=None if offsets is None else offsets.tolist(),
        results=results,
        scoring_wall_s=timings,
        warnings=warnings,
        provenance=dict(
            git_revision=wd.git_revision(), workdir=str(workdir), data=ds_provenance(ds, splits)
        ),
    )
    headline = results.get("test", results.get("val", {})).get(config.eval.decision)
    if headline:
        out["accuracy"] = headline["accuracy"]
    if wd.is_lead():
        write_outputs(workdir, out_dir, info, {**(summary or {}), **out}, predictions)
    out["report"] = str(out_dir / "report.md")  # where a person reads it
    return out


def write_outputs(workdir: Path, out_dir: Path, info: dict, metrics: dict, predictions) -> None:
    """predictions_<split>.jsonl, metrics.json, report.md and the PNGs into `out_dir`: the
    workdir itself, or another folder replaced as a whole."""
    same = out_dir.resolve() == Path(workdir).resolve()
    with contextlib.nullcontext(out_dir) if same else fileio.replaced_folder(out_dir) as folder:
        for split, (d, ll, n_tok, pred) in predictions.items():
            report.write_predictions(
                folder / f"predictions_{split}.jsonl", d, ll, n_tok, pred, info["label_names"]
            )
        report.write_run_report(folder, info, metrics, out_dir.name)


def ds_provenance(ds: dict, scored: dict) -> dict:
    """What each scored split was read from: data files (path and sha256) or a tfds build."""
    origin = {"val": "train", "train_sample": "train"}
    return {split: list(ds[origin.get(split, split)].sources) for split in scored}


def eval_folder(test_path: str, sources: Sequence[dict]) -> str:
    """`eval_<file name>-<first 8 hex digits of its sha256>`: the folder of another test set's
    results; two files of one name, other contents, do not share it."""
    digests = [s.get("sha256") for s in sources]
    digest = (
        digests[0]
        if len(digests) == 1 and digests[0]
        else hashlib.sha256(json.dumps(list(sources), sort_keys=True).encode()).hexdigest()
    )
    return f"eval_{Path(test_path).name.split('.')[0]}-{digest[:8]}"


def evaluate(config, workdir: str | Path, which: str = "best", changed: dict | None = None) -> dict:
    """Eval mode: a run's best (or latest) checkpoint, with the run's own config (`config`, from
    `rules.eval_config`); `changed` says which keys a --config changed. Another test set
    (`data.test_path` changed) is reported in `<workdir>/eval_<file name>-<sha256>/`
    (`eval_folder`), not over the run's report."""
    workdir, changed = Path(workdir), changed or {}
    preflight.check_paths(config, "eval")
    rules.check_data(workdir, config)
    run = load.load_run(config, workdir, which)
    info, step, fallback = run.info, run.step, run.fallback
    tok, ds = conditioning.load_data(config, splits=("train", "val", "test"), info=info)
    out_dir = (
        workdir / eval_folder(config.data.test_path, ds["test"].sources)
        if "data.test_path" in changed
        else workdir
    )
    wd.append_history(
        workdir, "eval", changed, checkpoint=which, evaluated_step=step, out_dir=str(out_dir)
    )
    fallbacks = [fallback] if fallback else []  # for the summary lines
    summary = {
        **read_train_summary(workdir),
        "evaluated_step": step,
        "evaluated_checkpoint": which,
        "checkpoint_fallbacks": fallbacks,
    }
    out = evaluate_params(
        config, workdir, run.model_config, run.params, tok, ds, info, summary, out_dir
    )
    return {**out, "checkpoint_fallbacks": fallbacks}
