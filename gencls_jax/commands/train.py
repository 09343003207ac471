"""`--mode=train`: one experiment end to end: data -> model -> training -> export -> evaluation.

What differs between conditionings is asked of `conditioning.get(config.model.conditioning)`,
what a step minimises of `training.objectives.for_run`, and the rules a workdir holds a run to
of `runs/rules.py`. A workdir holds:
    config.json          the resolved config (the run is reproducible from it; `runs/rules.py`)
    run_info.json        label names, conditioning, architecture, class prior, data counts,
                         the data files read (path, sha256; `rules.check_data`)
    history.jsonl        every command run in the workdir: time, mode, git revision, changes
    checkpoints/         orbax: latest K steps + the best by validation metric
    train_summary.json   how training went, over every call (stop reason, steps, wall time)
    metrics.jsonl        train/eval curves; curves.png
    export/<label>/      each class model as a Hugging Face folder (export/ alone: one model)
    predictions_<split>.jsonl, metrics.json, report.md, confusion_<split>.png
    eval_<file>-<sha8>/  eval on another test file (8 hex digits of its sha256): those reports
    .lock                while train, eval or generate runs in it (`runs/lock.py`)
    search/              with search.candidates: each candidate's run and the choice
                         (`commands/search.py`)
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from gencls_jax import conditioning
from gencls_jax.commands import preflight, search
from gencls_jax.commands.evaluate import check_settings, evaluate_params
from gencls_jax.data import pipeline
from gencls_jax.data.tokenize import Tokenizer
from gencls_jax.errors import RunError
from gencls_jax.model import gpt2
from gencls_jax.model.weights import CheckpointError, load_pretrained
from gencls_jax.reports.phases import PhaseTimer, fmt_table
from gencls_jax.runs import load, rules
from gencls_jax.runs import workdir as wd
from gencls_jax.scoring import decide
from gencls_jax.scoring.batched import score_dataset
from gencls_jax.system import fileio
from gencls_jax.training import loop, objectives
from gencls_jax.training import step as train_step

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


def validation_fn(config, cond, model_config, val, tok):
    """eval_fn for the training loop: the validation LM loss (generative conditionings), and
    the classifier's accuracy (Bayes' rule with a uniform prior: the best-checkpoint choice
    should not lean on the class balance).

    The LM loss is of the training rows (`data.long_text`). When the scoring rows are those
    rows (`eval.long_text` reads long texts as training does), each text's log-likelihood
    under its own class is already in the accuracy's scores, token for token: the loss is
    read from them, with no second pass over the validation texts and no programs of its own
    to compile (three fewer programs, one per bucket, before a run's first epoch ends)."""
    from_scores = (
        cond.generative and cond.classifies and pipeline.scoring_rows_are_training_rows(config)
    )
    loss_eval = None
    if cond.generative and not from_scores:
        stream = cond.train_stream(config, val, tok, batch_size=config.eval.batch_size)
        loss_eval = loop.make_loss_evaluator(
            config,
            model_config,
            lambda: stream.batches(0),
            stacked=cond.stacked,
        )
    if not cond.classifies:
        return loss_eval
    prior = np.log(np.full(val.num_classes, 1.0 / val.num_classes))

    def fn(params):
        out = dict(loss_eval(params)) if loss_eval is not None else {}
        ll, tokens = score_dataset(
            params, cond, val, tok, config, model_config, desc="val accuracy"
        )
        if from_scores:
            out["val_loss"] = lm_loss(ll[np.arange(len(val)), val.labels], tokens)
        return {**out, **decide.validation_figures(ll + prior, val.labels)}

    return fn


def lm_loss(own_ll: np.ndarray, tokens: np.ndarray) -> float:
    """The token-mean LM loss of texts from their log-likelihoods under their own class and the
    tokens each scored (float64 sums): what the loss evaluator's pass gives over the same rows."""
    total = float(np.sum(tokens, dtype=np.float64))
    return float(-np.sum(own_ll, dtype=np.float64) / max(total, 1e-30))


def run_info(config, cond, model_config, tok, ds) -> dict:
    """What the run is, for `run_info.json`: what eval, predict and explain load it with."""
    train = ds["train"]
    info = dict(
        conditioning=cond.name,
        label_names=list(train.label_names) if cond.classifies else [],
        model=dataclasses.asdict(model_config),
        train_class_counts=train.class_counts().tolist() if cond.classifies else [],
        n_train=len(train),
        n_synthetic=int((train.origin == "synthetic").sum()),
        tokenizer=config.data.tokenizer,
        data={split: list(d.sources) for split, d in ds.items()},  # checked by rules.check_data
    )
    if config.data.compact_vocab > 0:  # the ids eval/predict/explain read with
        info["compact_vocab_ids"] = list(tok.compact_ids)
    return info


def train_and_evaluate(config, workdir: str | Path) -> dict:
    """Train (or continue the run in `workdir`), then evaluate its best checkpoint; with
    `search.candidates`, the run is the best of several on the validation texts
    (`commands/search.py`, which trains each with `train_one`)."""
    if config.search.candidates:
        return search.train_best(config, Path(workdir), train_one)
    return train_one(config, workdir)


def train_one(config, workdir: str | Path) -> dict:
    """Train (or continue the run in `workdir`), then evaluate its best checkpoint. A workdir
    whose run was made by another config is refused before any file is written."""
    workdir = Path(workdir)
    preflight.check_paths(config, "train")
    check_settings(config)  # eval.ood_keep, eval.ece_bins: before training, not after it
    objectives.check_settings(config.train)  # the regularisation keys
    train_step.dropout_prng(config.train)  # before loop.train writes config.json
    changes = rules.check_resume(workdir, config)
    cond = conditioning.get(config.model.conditioning)
    objectives.check_decision_batching(config, cond)  # packed decision rows: before the data
    t0, timer = time.time(), PhaseTimer()
    with timer.phase("data"):  # read and tokenize (the tokenize cache makes a rerun fast)
        splits = ("train", "val", "test") if preflight.scores_test(config) else ("train", "val")
        tok, ds = conditioning.load_data(config, splits=splits)
    train, val = ds["train"], ds["val"]
    with timer.phase("model"):  # load or initialise the model, lay out the training rows
        model_config, params = initial_model(config, tok)
        info = run_info(config, cond, model_config, tok, ds)
        wd.write_run_info(workdir, info)
        wd.append_history(workdir, "train", changes)
        params = cond.init_params(params, train.num_classes)
        objective = objectives.for_run(config, cond, info["train_class_counts"])
        if config.train.objective == "decision":  # every class scores every text
            stream = cond.decision_stream(config, train, tok)
            num_batches = stream.num_batches
        else:
            stream = cond.train_stream(config, train, tok)
            num_batches = cond.steps_per_model(stream)
    logging.info(
        "training %s: %d texts, %d steps per epoch, %d parameters per model",
        cond.name,
        len(train),
        stream.num_batches(0),
        gpt2.count_params(params) // (train.num_classes if cond.stacked else 1),
    )
    eval_fn = validation_fn(config, cond, model_config, val, tok)
    with timer.phase("train"):  # with its validation passes and its compilation
        result = loop.train(
            config,
            workdir,
            model_config,
            params,
            stream.batches,
            num_batches,
            eval_fn,
            stacked=cond.stacked,
            objective=objective,
        )
    timer.note("train", **result.compiling)
    summary = _train_summary(workdir, result, time.time() - t0)
    if result.stop_reason == "interrupted":
        logging.info(
            "interrupted at step %d; run again with the same --workdir to resume", result.step
        )
        return summary
    best_params, step, fallback = load.restore_params(workdir, params)
    summary["checkpoint_fallbacks"] = [f for f in (result.fallback, fallback) if f]
    if wd.is_lead():
        with fileio.replaced_folder(workdir / "export") as folder:  # never half an export
            cond.export(folder, model_config, best_params, info["label_names"])
    if cond.classifies and config.eval.splits:
        with timer.phase("score"):  # val and test under every decision rule, the report
            scored = {**summary, "evaluated_step": step}
            summary.update(
                evaluate_params(config, workdir, model_config, best_params, tok, ds, info, scored)
            )
    summary["phases"] = timer.table()
    logging.info("time by phase: %s", fmt_table(summary["phases"]))
    if wd.is_lead():  # beside the run's other figures (metrics.json is written before the end)
        path = workdir / "train_summary.json"
        saved = {**json.loads(path.read_text()), "phases": summary["phases"]}
        fileio.write_text(path, json.dumps(saved, indent=2))
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
        **result.outcome(),
        train_wall_s=float(before.get("train_wall_s", 0.0)) + wall_s,
        train_calls=int(before.get("train_calls", 0)) + 1,
        final_train_loss=float(np.mean([r[1] for r in recent])) if recent else None,
    )
    if "search" in before:  # the run was chosen by a search (commands/search.py): it stays so
        summary["search"] = before["search"]
    if wd.is_lead():
        fileio.write_text(path, json.dumps({**summary, "recent_steps": recent}, indent=2))
    return summary
