"""`--mode=eval`, and the evaluation that ends a training run: score validation and test under
every decision rule, write the predictions, metrics.json and report.md.

On the validation texts eval also fits what predict applies later (`Fits`): the calibrated
rule's offsets, a temperature per rule (`scoring/calibration.py`) and the OOD threshold at
`eval.ood_keep` (`scoring/ood.py`); before them, with `eval.ngram_weights`, the weight of the
n-gram expert (`scoring/ngram.py`, counted on the training texts), whose terms are then added
to the log-likelihoods of every rule (not to p(text)). The temperature is fitted on val and
reported on test (`calibration.ece_calibrated`), so the test figure is out of sample; on val it
is in-sample and marked so. Without 'val' in eval.splits nothing is fitted, and metrics.json
says so.

Eval uses the run's own config (`runs/rules.eval_config`) and data; another test set
(`data.test_path` changed) is reported in `<workdir>/eval_<file name>-<sha256[:8]>/`, not over
the run's report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from absl import logging

from gencls_jax import conditioning
from gencls_jax.commands import preflight
from gencls_jax.data import pipeline
from gencls_jax.data.splits import per_class_sample
from gencls_jax.errors import DataError
from gencls_jax.reports import report, stats
from gencls_jax.runs import load, rules
from gencls_jax.runs import workdir as wd
from gencls_jax.scoring import calibration, decide, ngram, ood
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


@dataclasses.dataclass(frozen=True)
class Fits:
    """What eval fits on the validation texts; None / {} when 'val' is not scored."""

    offsets: np.ndarray | None  # the calibrated rule's per-class offsets
    temperatures: dict  # {rule: T} of the posteriors softmax(scores / T), every reported rule
    at_bound: dict  # {rule: T} fits that ran to an end of calibration.TEMPERATURE_RANGE: unused
    ood_threshold: float | None  # in distribution: ood_score <= it (a generative run)


def check_settings(config) -> None:
    """The evaluation settings a run is scored with, checked before anything is read or
    trained: a bad `eval.ood_keep`, `eval.ece_bins` or `eval.long_text` is a one-line
    DataError."""
    ood.check_keep(config.eval.ood_keep)
    pipeline.long_text(config, scoring=True)
    calibration.check_bins(config.eval.ece_bins)
    e = config.eval
    ngram.check_settings(
        e.ngram_weights, e.ngram_order, e.ngram_alpha, e.ngram_buckets, e.ngram_select
    )


def score_splits(config, cond, params, model_config, tok, ds, k: int) -> tuple[dict, dict]:
    """({split: (data, [N, K] log-likelihoods, [N] scored tokens)}, {split: seconds}) of every
    split eval scores (`scored_splits`)."""
    scored, timings = {}, {}
    for split, data in scored_splits(config, ds).items():
        t0 = time.time()
        ll, n_tok = score_dataset(
            params, cond, data, tok, config, model_config, desc=f"scoring {split}"
        )
        timings[split] = time.time() - t0
        scored[split] = (data, ll, n_tok)
        logging.info(
            "scored %s: %d texts x %d classes in %.1f s", split, len(data), k, timings[split]
        )
    return scored, timings


def fit_on_validation(
    config, cond, scored: dict, prior: np.ndarray, rule_names, expert=None
) -> Fits:
    """The calibrated rule's offsets, a temperature per rule (Bayes' rule always: the Python
    API's) and the OOD threshold at `eval.ood_keep`, all on the validation texts. A temperature
    whose fit runs to an end of its range (the validation texts all separate the classes, or
    all decide wrongly: no finite T is best) is not used, and said so. `expert`: the n-gram
    expert's [N, K] terms on val (`fit_expert`), added to the log-likelihoods of every rule."""
    if "val" not in scored:
        return Fits(None, {}, {}, None)
    d, ll, n_tok = scored["val"]
    combined = ll if expert is None else ll + expert
    offsets = decide.fit_offsets(combined, d.labels)
    temperatures, at_bound = {}, {}
    for rule in dict.fromkeys(["bayes", *rule_names]):
        s = decide.scores(combined, n_tok, rule, prior, offsets)
        t, end = calibration.fit_temperature(s, d.labels)
        if not end:
            temperatures[rule] = t
            continue
        at_bound[rule] = t  # the likelihood runs off to T -> 0 or inf: no finite T is best
        logging.warning(
            "no temperature for the %s rule: its fit on the validation texts ran to %.3g, an end "
            "of its search range (their scores %s); its posteriors stay the scores' own",
            rule,
            t,
            "all separate the classes" if t < 1 else "all decide wrongly",
        )
    threshold = None
    if cond.generative:  # a classification head has no p(text)
        threshold = ood.keep_threshold(ood.ood_scores(ll, prior, n_tok), config.eval.ood_keep)
    return Fits(offsets, temperatures, at_bound, threshold)


def fit_expert(config, ds: dict, scored: dict, prior, rule: str):
    """The n-gram expert (`scoring/ngram.py`), counted on the training texts: (its [K, buckets]
    counts, {split: [N, K] w * log p_ngram(x | c)}, metrics.json's `ngram`), w the weight of
    `eval.ngram_weights` (0 always tried) of the best val figure under `rule`
    (`eval.ngram_select`: accuracy, or the cross-entropy at a fitted temperature). A grid of
    0 only: (None, None, None), today's classifier; no val texts or w = 0: no counts, no terms."""
    e = config.eval
    if not ngram.enabled(e.ngram_weights):
        return None, None, None
    order, alpha = int(e.ngram_order), float(e.ngram_alpha)
    grid = sorted({0.0, *(float(w) for w in e.ngram_weights)})
    report = dict(
        rule=rule,
        grid=grid,
        order=order,
        alpha=alpha,
        buckets=int(e.ngram_buckets),
        select=e.ngram_select,
    )
    if "val" not in scored or "train" not in ds:
        logging.warning("eval.ngram_weights: no validation texts scored, no weight chosen: off")
        return None, None, dict(report, weight=0.0, note="no validation texts: no weight chosen")
    train = ds["train"]
    seqs = ngram.sequences(train.texts)
    counts = ngram.fit(seqs, train.labels, len(prior), order, int(e.ngram_buckets))
    d, ll, n_tok = scored["val"]
    nb = ngram.term(counts, d.texts, 1.0, alpha, order)
    scores = ngram.decision_scores(ll, nb, n_tok, d.labels, rule, prior, grid)
    acc = ngram.accuracies(scores, d.labels)
    xent = ngram.cross_entropies(scores, d.labels)
    w = ngram.select_weight(e.ngram_select, acc, {k: v[0] for k, v in xent.items()})
    report.update(
        weight=w,
        val_accuracy_without=acc[0.0],
        val_accuracy_with=acc[w],
        val_accuracy_alone=float(np.mean((nb + prior).argmax(1) == d.labels)),
        val_accuracy={f"{k:g}": v for k, v in acc.items()},
        val_cross_entropy={f"{k:g}": v[0] for k, v in xent.items()},
        val_temperature={f"{k:g}": v[1] for k, v in xent.items()},
        fitted_on="train",
        file=ngram.COUNTS_FILE if w > 0 else None,
    )
    logging.info(
        "n-gram expert: weight %g by val %s (val accuracy %.4f, without %.4f; cross-entropy "
        "%.4f, without %.4f)",
        w,
        e.ngram_select.replace("_", "-"),
        acc[w],
        acc[0.0],
        xent[w][0],
        xent[0.0][0],
    )
    if w == 0:
        return None, None, report
    terms = {  # val's log-probabilities are those the weight was chosen on
        s: w * nb if s == "val" else ngram.term(counts, x.texts, w, alpha, order)
        for s, (x, _, _) in scored.items()
    }
    return counts, terms, report


def judge_splits(
    scored: dict, rule: str, prior, fits: Fits, generative: bool, experts: dict | None = None
) -> dict:
    """{split: `decide.Judged`} under the run's rule, at its fitted temperature and threshold,
    with the n-gram expert's terms of each split (`experts`, None: none): what predict computes
    for the same texts."""
    return {
        split: decide.judge(
            ll,
            n_tok,
            rule,
            prior,
            offsets=fits.offsets,
            temperature=fits.temperatures.get(rule),
            ood_threshold=fits.ood_threshold,
            generative=generative,
            expert=(experts or {}).get(split),
        )
        for split, (_, ll, n_tok) in scored.items()
    }


def calibration_figures(config, scored: dict, judged: dict, fits: Fits, rule: str) -> dict:
    """metrics.json's `calibration`: the top-label ECE of each split's posteriors as scored and
    at the temperature fitted on val; `ece` and `ece_calibrated` of the headline split (test,
    else val: then in-sample), and what --abstain_below=P does there. `figures` (the arrays the
    report's diagrams draw) is taken out before metrics.json is written."""
    bins = int(config.eval.ece_bins)
    per_split, figures = {}, {}
    for split, j in judged.items():
        labels = scored[split][0].labels
        raw = calibration.top_label(decide.posteriors(j.scores), labels)
        cal = calibration.top_label(j.posteriors, labels) if j.temperature is not None else None
        per_split[split] = dict(
            ece=calibration.ece(*raw, bins),
            ece_calibrated=None if cal is None else calibration.ece(*cal, bins),
        )
        figures[split] = dict(raw=raw, calibrated=cal)
    head = next((s for s in ("test", "val") if s in judged), None)
    out = dict(
        rule=rule,
        bins=bins,
        fitted_on="val" if "val" in scored else None,
        temperature=fits.temperatures.get(rule),
        temperatures=fits.temperatures,
        temperature_at_bound=fits.at_bound,
        split=head,
        ece=per_split[head]["ece"] if head else None,
        ece_calibrated=per_split[head]["ece_calibrated"] if head else None,
        splits=per_split,
    )
    if head:
        conf, ok = figures[head]["calibrated"] or figures[head]["raw"]
        out["abstain"] = calibration.abstain_table(conf, ok, calibration.ABSTAIN_LEVELS)
        out["figures"] = dict(split=head, bins=bins, **figures[head])
    return out


def ood_figures(config, judged: dict, fits: Fits, generative: bool) -> dict | None:
    """metrics.json's `ood`: the keep rate and threshold fitted on val (None without val) and
    each split's OOD scores (`ood.distribution`); None for a classification head (no
    p(text))."""
    if not generative:
        return None
    out = dict(
        score="-log p(text) / n_tokens, nats per scored token",
        keep=float(config.eval.ood_keep),
        threshold=fits.ood_threshold,
        fitted_on="val" if fits.ood_threshold is not None else None,
        splits={s: ood.distribution(j.ood_scores, fits.ood_threshold) for s, j in judged.items()},
    )
    if config.data.compact_vocab > 0:  # p(text) is then that of the text with rare ids merged
        out["note"] = (
            f"data.compact_vocab={config.data.compact_vocab}: every token outside the kept ids "
            "reads as one 'other' token, so p(text) is that of the text with its rare tokens "
            "merged, and foreign text made of them (code, random characters) can look ordinary"
        )
    return out


def per_text_fields(j: decide.Judged) -> dict:
    """The columns predictions_<split>.jsonl adds per text: the top posterior at the run's
    temperature and, for a generative run, log p(text), the OOD score, in distribution."""
    out = {"confidence": j.confidence}
    if j.log_marginal is not None:
        out.update(log_marginal=j.log_marginal, ood_score=j.ood_scores)
    if j.in_distribution is not None:
        out["in_distribution"] = j.in_distribution
    return out


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
    """Score val and test, decide under every rule, fit on val (offsets, temperatures, the OOD
    threshold), write predictions, metrics.json, report.md (into `out_dir`, the workdir by
    default; another folder is replaced as a whole)."""
    cond = conditioning.get(info["conditioning"])
    k = len(info["label_names"])
    scored, timings = score_splits(config, cond, params, model_config, tok, ds, k)
    return evaluate_scored(config, workdir, info, ds, scored, timings, summary, out_dir)


def evaluate_scored(
    config, workdir: Path, info, ds, scored: dict, timings: dict, summary=None, out_dir=None
) -> dict:
    """`evaluate_params` after scoring: `scored` as `score_splits` gives it (one run's, or an
    ensemble's mean log-likelihoods: `commands/ensemble.py`), `ds` the splits the n-gram expert
    counts on (train) and the provenance names."""
    out_dir = Path(out_dir or workdir)
    cond = conditioning.get(info["conditioning"])
    label_names = info["label_names"]
    # The class prior of Bayes' rule; a discriminative head's scores are posteriors already.
    prior = decide.prior_for(cond, info["train_class_counts"])
    rule_names = list(dict.fromkeys([config.eval.decision, *config.eval.report_rules]))
    if not cond.generative:  # a length-normalised log-likelihood has no meaning for posteriors
        rule_names = [r for r in rule_names if r != "per_token"] or ["bayes"]
    rule, _ = decide.resolve_rule(config.eval.decision, "val" in scored, cond.generative)
    counts, experts, ngram_report = fit_expert(config, ds, scored, prior, rule)
    experts = experts or {}  # the n-gram expert's terms, added to every rule's log-likelihoods
    fits = fit_on_validation(config, cond, scored, prior, rule_names, experts.get("val"))
    judged = judge_splits(scored, rule, prior, fits, cond.generative, experts)
    results, warnings, predictions = {}, [], {}
    for split, (d, ll, n_tok) in scored.items():
        combined = ll + experts[split] if split in experts else ll
        results[split] = stats.evaluate_split(
            combined,
            d.labels,
            n_tok,
            label_names,
            prior,
            fits.offsets,
            rule_names,
            int(config.eval.sample_per_class) if split == "test" else 0,
            int(config.seed),
        )
        pred = decide.scores(combined, n_tok, "bayes", prior).argmax(1)
        predictions[split] = (d, ll, n_tok, pred, per_text_fields(judged[split]))
        margin = float(config.eval.degenerate_margin_ratio)
        warning = stats.degenerate_warning(
            ll, d.labels, pred, label_names, margin_ratio=margin, split=split
        )
        if warning:
            logging.warning("%s", warning)
            warnings.append(warning)
    calib = calibration_figures(config, scored, judged, fits, rule)
    figures = calib.pop("figures", None)
    out = dict(
        decision=config.eval.decision,
        prior=prior.tolist(),
        offsets=None if fits.offsets is None else fits.offsets.tolist(),
        results=results,
        calibration=calib,
        ood=ood_figures(config, judged, fits, cond.generative),
        scoring_wall_s=timings,
        warnings=warnings,
        provenance=dict(
            git_revision=wd.git_revision(), workdir=str(workdir), data=ds_provenance(ds, scored)
        ),
    )
    if ngram_report is not None:
        out["ngram"] = ngram_report
    if (summary or {}).get("search"):  # the run was chosen by a search: its figures, the gap
        out["search"] = report.search_section(summary["search"], results, config.eval.decision)
    headline = results.get("test", results.get("val", {})).get(config.eval.decision)
    if headline:
        out["accuracy"] = headline["accuracy"]
    if wd.is_lead():
        metrics = {**(summary or {}), **out}
        write_outputs(workdir, out_dir, info, metrics, predictions, figures, counts)
    out["report"] = str(out_dir / "report.md")  # where a person reads it
    return out


def write_outputs(
    workdir: Path,
    out_dir: Path,
    info: dict,
    metrics: dict,
    predictions,
    figures=None,
    ngram_counts=None,
) -> None:
    """predictions_<split>.jsonl, metrics.json, report.md and the PNGs into `out_dir`: the
    workdir itself, or another folder replaced as a whole. `figures`: the arrays of the
    calibration diagrams (`calibration_figures`); `ngram_counts`: the n-gram expert's, for
    predict (`ngram.COUNTS_FILE`)."""
    same = out_dir.resolve() == Path(workdir).resolve()
    with contextlib.nullcontext(out_dir) if same else fileio.replaced_folder(out_dir) as folder:
        for split, (d, ll, n_tok, pred, extra) in predictions.items():
            report.write_predictions(
                folder / f"predictions_{split}.jsonl",
                d,
                ll,
                n_tok,
                pred,
                info["label_names"],
                extra,
            )
        if ngram_counts is not None:
            ngram.save(folder / ngram.COUNTS_FILE, ngram_counts)
        report.write_run_report(folder, info, metrics, out_dir.name, figures)


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
    check_settings(config)
    if "eval.ood_keep" in changed and "val" not in config.eval.splits:
        raise DataError(
            f"--config.eval.ood_keep={config.eval.ood_keep}: the OOD threshold is chosen on the "
            f"validation texts, and eval.splits={tuple(config.eval.splits)} scores none (add 'val')"
        )
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
