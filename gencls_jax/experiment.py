"""One experiment, end to end: data -> class-conditional LMs -> scores -> decisions -> report.

`run.py` calls `train_and_evaluate` and `evaluate` (and `synthetic.generate_synthetic`). What
differs between conditioning modes is asked of `conditioning.get(config.model.conditioning)`;
what a workdir holds and how a trained run is loaded is `workdir.py`. A workdir holds:
    config.json          the resolved config (the run is reproducible from it; `workdir.py`)
    run_info.json        label names, conditioning, architecture, class prior, data counts,
                         the data files read (path, sha256; `workdir.check_data`)
    history.jsonl        every command run in the workdir: time, mode, git revision, changes
    checkpoints/         orbax: latest K steps + the best by validation metric
    train_summary.json   how training went, over every call (stop reason, steps, wall time)
    metrics.jsonl        train/eval curves; curves.png
    export/<label>/      each class model as a Hugging Face folder (export/ alone: one model)
    predictions_<split>.jsonl, metrics.json, report.md, confusion_<split>.png
    eval_<file>-<sha8>/  eval on another test file (8 hex digits of its sha256): those reports
    .lock                while train, eval or generate runs in it (`lock.py`)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from absl import logging

from gencls_jax import conditioning, fileio, objectives, preflight, report
from gencls_jax import evaluate as decide
from gencls_jax import model as gpt2
from gencls_jax import train as trainer
from gencls_jax import workdir as wd
from gencls_jax.data import compact
from gencls_jax.data.splits import per_class_sample
from gencls_jax.data.tokenize import Tokenizer, load_tokenizer
from gencls_jax.phases import PhaseTimer, fmt_table
from gencls_jax.weights import CheckpointError, load_pretrained
from gencls_jax.workdir import RunError

# --- model initialisation -------------------------------------------------------------------


def initial_model(config, tok: Tokenizer) -> tuple[gpt2.GPT2Config, Any]:
    """(architecture, float32 params of one model) from `model.init`, for the run's tokenizer
    `tok`. A scratch model's context is its size's (1024 for the GPT-2 sizes) or `data.max_len`
    if longer; a loaded one must already cover `data.max_len`. The model's BOS is the
    tokenizer's, as the training rows' is (a compact vocabulary renumbers it)."""
    m, vocab_size = config.model, tok.vocab_size
    if config.data.compact_vocab > 0 and m.init != "scratch":
        raise RunError(
            "data.compact_vocab renumbers the token ids: it needs model.init='scratch' "
            f"(got {m.init!r})"
        )
    if m.init == "scratch":
        base = gpt2.config_for(
            m.size,
            vocab_size=vocab_size,
            n_positions=max(gpt2.SIZES[m.size].get("n_positions", 1024), config.data.max_len),
        )
        params = gpt2.init_params(base, seed=int(config.seed))
    else:
        source = m.pretrained if m.init == "pretrained" else m.init
        try:
            base, params = load_pretrained(source)
        except CheckpointError as e:
            hint = (
                " (offline? train configs/pretrain_unsup.py and pass "
                "--config.model.init=<its workdir>/export)"
            )
            raise RunError(
                f"model.init={m.init!r}: {e}{hint if m.init == 'pretrained' else ''}"
            ) from None
    if base.vocab_size < vocab_size:
        raise RunError(
            f"the model's vocabulary ({base.vocab_size}) is smaller than the tokenizer's "
            f"({vocab_size})"
        )
    if config.data.max_len > base.n_positions:
        raise RunError(
            f"data.max_len={config.data.max_len} exceeds the model's context ({base.n_positions})"
        )
    return gpt2.resolve_config(base.replace(bos_token_id=tok.bos_id), config.model), params


# --- train -----------------------------------------------------------------------------------


def load_data(config, splits, info: dict | None = None):
    """(tokenizer, the tokenized splits this run's conditioning uses). With `data.compact_vocab`
    the tokenizer and splits are in the compact ids: a trained run's (`info`), else those of
    this training split (`data/compact.py`)."""
    d = config.data
    tok = load_tokenizer(d.tokenizer, d.tokenizer_fallback)
    mode = conditioning.get(config.model.conditioning)
    ds = mode.datasets(config, tok, splits)
    if d.compact_vocab > 0:
        always = mode.reserved_ids(config, tok, ds["train"].label_names)
        tok, ds, _ = compact.apply(
            ds, tok, int(d.compact_vocab), (info or {}).get("compact_vocab_ids"), always
        )
    return tok, ds


def _val_metrics_fn(config, model_config, val, tok):
    """eval_fn for the trainer: the validation LM loss (generative modes), and the classifier's
    accuracy (Bayes rule with a uniform prior: the best-checkpoint choice should not lean on the
    class balance)."""
    mode = conditioning.get(config.model.conditioning)
    loss_eval = None
    if mode.generative:
        stream = mode.train_stream(config, val, tok, batch_size=config.eval.batch_size)
        loss_eval = trainer.make_loss_evaluator(
            config, model_config, lambda: stream.batches(0), stacked=mode.stacked
        )
    if not mode.classifies:
        return loss_eval
    prior = np.log(np.full(val.num_classes, 1.0 / val.num_classes))

    def fn(params):
        out = dict(loss_eval(params)) if loss_eval is not None else {}
        ll, _ = mode.score(params, val, tok, config, model_config, desc="val accuracy")
        out["val_accuracy"] = float(np.mean((ll + prior).argmax(1) == val.labels))
        return out

    return fn


def train_and_evaluate(config, workdir: str | Path) -> dict:
    """Train (or continue the run in `workdir`), then evaluate its best checkpoint. A workdir
    whose run was made by another config is refused before any file is written."""
    workdir = Path(workdir)
    preflight.check_paths(config, "train")
    changes = wd.check_resume(workdir, config)
    mode = conditioning.get(config.model.conditioning)
    t0 = time.time()
    timer = PhaseTimer()
    with timer.phase("data"):  # read and tokenize (the tokenize cache makes a rerun fast)
        tok, ds = load_data(
            config, splits=("train", "val", "test") if config.eval.splits else ("train", "val")
        )
    train, val = ds["train"], ds["val"]
    model_config, params = initial_model(config, tok)
    label_names = list(train.label_names) if mode.classifies else []
    info = dict(
        conditioning=mode.name,
        label_names=label_names,
        model=dataclasses.asdict(model_config),
        train_class_counts=train.class_counts().tolist() if mode.classifies else [],
        n_train=len(train),
        n_synthetic=int((train.origin == "synthetic").sum()),
        tokenizer=config.data.tokenizer,
        data={split: list(d.sources) for split, d in ds.items()},  # checked by wd.check_data
    )
    if config.data.compact_vocab > 0:  # the ids eval/predict/explain read with
        info["compact_vocab_ids"] = list(tok.compact_ids)
    wd.write_run_info(workdir, info)
    wd.append_history(workdir, "train", changes)
    params = mode.init_params(params, train.num_classes)
    joint = config.train.objective == "decision"  # every class scores every text (objectives.py)
    if joint:
        loss_fn = objectives.loss_fn_for(
            config, mode.decision_sums(config, decide.log_prior(info["train_class_counts"]))
        )
        stream = mode.decision_stream(config, train, tok)
    else:
        loss_fn, stream = objectives.loss_fn_for(config), mode.train_stream(config, train, tok)
    logging.info(
        "training %s: %d texts, %d steps per epoch, %d parameters per model",
        mode.name,
        len(train),
        stream.num_batches(0),
        gpt2.count_params(params) // (train.num_classes if mode.stacked else 1),
    )
    with timer.phase("train"):  # with its validation passes and first-step compilation
        result = trainer.train(
            config,
            workdir,
            model_config,
            params,
            stream.batches,
            stream.num_batches if joint else mode.steps_per_model(stream),
            _val_metrics_fn(config, model_config, val, tok),
            stacked=mode.stacked,
            loss_fn=loss_fn,
        )
    summary = _train_summary(workdir, result, time.time() - t0)
    if result.stop_reason == "interrupted":
        logging.info(
            "interrupted at step %d; run again with the same --workdir to resume", result.step
        )
        return summary
    best_params, step, fallback = wd.restore_params(workdir, params)
    summary["checkpoint_fallbacks"] = [f for f in (result.fallback, fallback) if f]
    if wd.is_lead():
        with fileio.replaced_folder(workdir / "export") as folder:  # never half an export
            mode.export(folder, model_config, best_params, label_names)
    if mode.classifies and config.eval.splits:
        with timer.phase("score"):  # val and test under every decision rule, the report
            summary.update(
                evaluate_params(
                    config,
                    workdir,
                    model_config,
                    best_params,
                    tok,
                    ds,
                    info,
                    {**summary, "evaluated_step": step},
                )
            )
    summary["phases"] = timer.table()
    logging.info("time by phase: %s", fmt_table(summary["phases"]))
    return summary


# final_train_loss: the mean loss of the run's last RECENT_STEPS steps (over resumes too)
RECENT_STEPS = 50


def _train_summary(workdir: Path, result, wall_s: float) -> dict:
    """How training went, over every call that trained this run (a resumed run adds to the
    interrupted one's wall time and steps), kept in `train_summary.json` for eval mode."""
    path = workdir / "train_summary.json"
    before = json.loads(path.read_text()) if path.exists() else {}
    first = result.history[0]["step"] if result.history else result.step + 1
    recent = [r for r in before.get("recent_steps", []) if r[0] < first]
    recent = (recent + [[h["step"], h["loss"]] for h in result.history if h["finite"]])[
        -RECENT_STEPS:
    ]
    summary = dict(
        stop_reason=result.stop_reason,
        signal=result.signal,
        steps=result.step,
        epochs_done=result.epoch,
        best=result.best,
        best_step=result.best_step,
        train_wall_s=float(before.get("train_wall_s", 0.0)) + wall_s,
        train_calls=int(before.get("train_calls", 0)) + 1,
        final_train_loss=float(np.mean([r[1] for r in recent])) if recent else None,
    )
    if wd.is_lead():
        fileio.write_text(path, json.dumps({**summary, "recent_steps": recent}, indent=2))
    return summary


def read_train_summary(workdir: Path) -> dict:
    path = Path(workdir) / "train_summary.json"
    if not path.exists():
        return {}
    return {k: v for k, v in json.loads(path.read_text()).items() if k != "recent_steps"}


# --- evaluate --------------------------------------------------------------------------------


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
    mode = conditioning.get(info["conditioning"])
    label_names = info["label_names"]
    k = len(label_names)
    # The class prior of Bayes' rule; a discriminative head's scores are posteriors already.
    prior = decide.log_prior(info["train_class_counts"]) if mode.generative else np.zeros(k)
    scored, timings = {}, {}
    splits = {s: ds[s] for s in ("val", "test") if s in config.eval.splits and s in ds}
    if "train" in ds and config.eval.train_sample_per_class > 0:  # for the train/validation gap
        idx = per_class_sample(
            ds["train"].labels,
            int(config.eval.train_sample_per_class),
            int(config.seed),
            "train_report",
        )
        splits = {"train_sample": ds["train"].subset(idx), **splits}
    for split, data in splits.items():
        t0 = time.time()
        ll, n_tok = mode.score(params, data, tok, config, model_config, desc=f"scoring {split}")
        timings[split] = time.time() - t0
        scored[split] = (data, ll, n_tok)
        logging.info(
            "scored %s: %d texts x %d classes in %.1f s", split, len(data), k, timings[split]
        )
    offsets = None
    if "val" in scored:
        v, ll, _ = scored["val"]
        offsets = decide.fit_offsets(ll, v.labels)
    rules = list(dict.fromkeys([config.eval.decision, *config.eval.report_rules]))
    if not mode.generative:  # a length-normalised log-likelihood has no meaning for posteriors
        rules = [r for r in rules if r != "per_token"] or ["bayes"]
    results, warnings, predictions = {}, [], {}
    for split, (d, ll, n_tok) in scored.items():
        results[split] = decide.evaluate_split(
            ll,
            d.labels,
            n_tok,
            label_names,
            prior,
            offsets,
            rules,
            int(config.eval.sample_per_class) if split == "test" else 0,
            int(config.seed),
        )
        pred = decide.scores(ll, n_tok, "bayes", prior).argmax(1)
        predictions[split] = (d, ll, n_tok, pred)
        warning = decide.degenerate_warning(
            ll,
            d.labels,
            pred,
            label_names,
            margin_ratio=float(config.eval.degenerate_margin_ratio),
            split=split,
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
        same = out_dir.resolve() == Path(workdir).resolve()
        with contextlib.nullcontext(out_dir) if same else fileio.replaced_folder(out_dir) as folder:
            for split, (d, ll, n_tok, pred) in predictions.items():
                report.write_predictions(
                    folder / f"predictions_{split}.jsonl", d, ll, n_tok, pred, label_names
                )
            report.write_run_report(folder, info, {**(summary or {}), **out}, out_dir.name)
    out["report"] = str(out_dir / "report.md")  # where a person reads it
    return out


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
    `workdir.eval_config`); `changed` says which keys a --config changed. Another test set
    (`data.test_path` changed) is reported in `<workdir>/eval_<file name>-<sha256>/`
    (`eval_folder`), not over the run's report."""
    workdir, changed = Path(workdir), changed or {}
    preflight.check_paths(config, "eval")
    wd.check_data(workdir, config)
    info, model_config, params, step, _, fallback = wd.load_run(config, workdir, which)
    tok, ds = load_data(config, splits=("train", "val", "test"), info=info)
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
    out = evaluate_params(config, workdir, model_config, params, tok, ds, info, summary, out_dir)
    return {**out, "checkpoint_fallbacks": fallbacks}
