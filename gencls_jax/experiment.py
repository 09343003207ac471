"""One experiment, end to end: data -> class-conditional LMs -> scores -> decisions -> report.

`run.py` calls `train_and_evaluate`, `evaluate`, `generate`; `GenerativeClassifier` (in
`classifier.py`) reuses `load_run`. A workdir holds everything a run made:
    config.json          the resolved config (the run is reproducible from it)
    run_info.json        label names, conditioning, architecture, class prior, data counts
    checkpoints/         orbax: latest K steps + the best by validation metric
    metrics.jsonl        train/eval curves; curves.png
    export/<label>/      each class model as a Hugging Face folder (export/ alone: one model)
    predictions_<split>.jsonl, metrics.json, report.md, confusion_<split>.png
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from absl import logging

from gencls_jax import evaluate as E
from gencls_jax import model as M
from gencls_jax import report
from gencls_jax import train as T
from gencls_jax.checkpoint import Checkpointer
from gencls_jax.classify import class_log_likelihoods
from gencls_jax.data import pipeline
from gencls_jax.data.sources import concat
from gencls_jax.data.tokenize import load_tokenizer
from gencls_jax.optim import make_optimizer
from gencls_jax.score import stack_params
from gencls_jax.weights import CheckpointError, load_pretrained, save_pretrained


class RunError(RuntimeError):
    """A problem with the run as set up (workdir, checkpoint, config): the message says what to do."""


# --- model initialisation -------------------------------------------------------------------


def initial_model(config, vocab_size: int) -> tuple[M.GPT2Config, Any]:
    """(architecture, float32 params of one model) from `model.init`. A scratch model's context
    is its size's (1024 for the GPT-2 sizes) or `data.max_len` if longer; a loaded one must
    already cover `data.max_len`."""
    m = config.model
    if m.init == "scratch":
        base = M.config_for(m.size, vocab_size=vocab_size, n_positions=max(M.SIZES[m.size].get("n_positions", 1024), config.data.max_len))
        params = M.init_params(base, seed=int(config.seed))
    else:
        source = m.pretrained if m.init == "pretrained" else m.init
        try:
            base, params = load_pretrained(source)
        except CheckpointError as e:
            hint = " (offline? train configs/pretrain_unsup.py and pass --config.model.init=<its workdir>/export)"
            raise RunError(f"model.init={m.init!r}: {e}{hint if m.init == 'pretrained' else ''}") from None
    if base.vocab_size < vocab_size:
        raise RunError(f"the model's vocabulary ({base.vocab_size}) is smaller than the tokenizer's ({vocab_size})")
    if config.data.max_len > base.n_positions:
        raise RunError(f"data.max_len={config.data.max_len} exceeds the model's context ({base.n_positions})")
    return T.resolve_model_config(config, base), params


# --- run bookkeeping --------------------------------------------------------------------------

_ARCH = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")


def write_run_info(workdir: Path, info: dict) -> None:
    """Record what makes a workdir what it is; refuse a workdir made by an incompatible config."""
    path = workdir / "run_info.json"
    if path.exists():
        old = json.loads(path.read_text())
        for key in ("conditioning", "label_names"):
            if old.get(key) != info.get(key):
                raise RunError(f"{workdir} was made with {key}={old.get(key)}, this config has {info.get(key)}; use another --workdir")
        for key in _ARCH:
            if old["model"].get(key) != info["model"].get(key):
                raise RunError(
                    f"{workdir} holds a model with {key}={old['model'].get(key)}, this config builds {key}={info['model'].get(key)} "
                    "(another model size?); use another --workdir"
                )
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2))


def read_run_info(workdir: Path) -> dict:
    path = Path(workdir) / "run_info.json"
    if not path.exists():
        raise RunError(f"{workdir} has no run_info.json: no run was trained there (run --mode=train first)")
    return json.loads(path.read_text())


def model_config_from_info(info: dict) -> M.GPT2Config:
    return M.GPT2Config(**info["model"])


def load_run(config, workdir: str | Path, which: str = "best", purpose: str = "classify with") -> tuple:
    """(run_info, model config, best/latest params, step) of a trained class-conditional run."""
    workdir = Path(workdir)
    info = read_run_info(workdir)
    if info["conditioning"] == "unconditional":
        raise RunError(f"{workdir} holds an unconditional LM: it has no classes to {purpose}")
    model_config = T.resolve_model_config(config, model_config_from_info(info))
    k = len(info["label_names"]) if info["conditioning"] == "per_class" else 0
    like = jax.eval_shape(lambda: stack_params([M.init_params(model_config)] * k) if k else M.init_params(model_config))
    params, step = restore_params(config, workdir, model_config, like, which)
    return info, model_config, params, step


def restore_params(config, workdir: Path, model_config: M.GPT2Config, like_params: Any, which: str = "best"):
    """Parameters of the best (or latest) checkpoint in `workdir`, as float32 arrays."""
    ckpt_dir = Path(workdir) / "checkpoints"
    if not ckpt_dir.exists():
        raise RunError(f"{workdir} has no checkpoints yet: train first (--mode=train)")
    ckpt = Checkpointer(ckpt_dir, config.train.keep_checkpoints, config.train.best_metric, async_save=False)
    try:
        steps = ckpt.all_steps()
        if not steps:
            raise RunError(f"{ckpt_dir} holds no checkpoint: train first (--mode=train)")
        step = ckpt.manager.best_step() if which == "best" else None
        step = step if step is not None else max(steps)
        tx, _ = make_optimizer(config.train, total_steps=1)
        per_class = T.is_per_class(config)
        k = T.num_stacked_classes(like_params) if per_class else None
        dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        like = jax.eval_shape(lambda p: T.init_state(p, tx, config.train, int(config.seed), k), like_params)
        like = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=dev), like)
        try:
            state, meta = ckpt.restore(step, like)
        except (ValueError, KeyError) as e:
            raise RunError(f"checkpoint {ckpt_dir}/{step} does not fit this config's model ({type(e).__name__}); another model size?") from None
    finally:
        ckpt.close()
    logging.info("restored step %d (%s) from %s", step, which, ckpt_dir)
    return state.params, step


# --- datasets --------------------------------------------------------------------------------


def load_data(config, splits):
    d = config.data
    tok = load_tokenizer(d.tokenizer, d.tokenizer_fallback)
    if config.model.conditioning == "unconditional":
        wanted = tuple(s for s in d.pretrain_splits if s != "train")
        ds = pipeline.load_datasets(config, splits=("train", "val", *wanted), tokenizer=tok)
        train = ds["train"]
        for s in wanted:
            train = concat(train, ds[s])
        return tok, {"train": train, "val": ds["val"]}
    ds = pipeline.load_datasets(config, splits=splits, tokenizer=tok)
    if "test" in ds and config.eval.test_per_class > 0:
        idx = E.stratified_sample(ds["test"].labels, int(config.eval.test_per_class), int(config.seed))
        ds["test"] = ds["test"].subset(idx)
    return tok, ds


# --- train -----------------------------------------------------------------------------------


def _val_metrics_fn(config, model_config, val, tok):
    """eval_fn for the trainer: validation loss, and the classifier's accuracy (Bayes rule with a
    uniform prior: the best-checkpoint choice should not lean on the class balance)."""
    stream = pipeline.train_stream(config, val, tok, batch_size=config.eval.batch_size)
    loss_eval = T.make_loss_evaluator(config, model_config, lambda: stream.batches(0))
    if config.model.conditioning == "unconditional":
        return loss_eval
    prior = np.log(np.full(val.num_classes, 1.0 / val.num_classes))

    def fn(params):
        out = dict(loss_eval(params))
        ll, _ = class_log_likelihoods(params, val, tok, config, model_config, desc="val accuracy")
        out["val_accuracy"] = float(np.mean((ll + prior).argmax(1) == val.labels))
        return out

    return fn


def train_and_evaluate(config, workdir: str | Path) -> dict:
    T.setup_distributed(config)
    workdir = Path(workdir)
    t0 = time.time()
    tok, ds = load_data(config, splits=("train", "val", "test") if config.eval.splits else ("train", "val"))
    train, val = ds["train"], ds["val"]
    model_config, params = initial_model(config, vocab_size=tok.vocab_size)
    conditioning = config.model.conditioning
    label_names = list(train.label_names)
    info = dict(
        conditioning=conditioning,
        label_names=label_names if conditioning != "unconditional" else [],
        model=dataclasses.asdict(model_config),
        train_class_counts=train.class_counts().tolist() if conditioning != "unconditional" else [],
        n_train=len(train),
        n_synthetic=int((train.origin == "synthetic").sum()),
        tokenizer=config.data.tokenizer,
    )
    write_run_info(workdir, info)
    if conditioning == "per_class":
        params = stack_params([params] * train.num_classes)
    stream = pipeline.train_stream(config, train, tok)
    logging.info("training %s: %d texts, %d steps per epoch, %d parameters per model",
                 conditioning, len(train), stream.num_batches(0), M.count_params(params) // (train.num_classes if conditioning == "per_class" else 1))
    result = T.train(config, workdir, model_config, params, stream.batches, stream.num_batches,
                     _val_metrics_fn(config, model_config, val, tok))
    train_s = time.time() - t0
    summary = dict(stop_reason=result.stop_reason, steps=result.step, epochs_done=result.epoch,
                   best=result.best, best_step=result.best_step, train_wall_s=train_s)
    final_loss = [r["loss"] for r in result.history[-50:]]
    summary["final_train_loss"] = float(np.mean(final_loss)) if final_loss else None
    if result.stop_reason == "interrupted":
        logging.info("interrupted at step %d; run again with the same --workdir to resume", result.step)
        return summary
    best_params, _ = restore_params(config, workdir, model_config, params)
    export(workdir, model_config, best_params, conditioning, label_names)
    if conditioning != "unconditional" and config.eval.splits:
        summary.update(evaluate_params(config, workdir, model_config, best_params, tok, ds, info, summary))
    return summary


def export(workdir: Path, model_config, params, conditioning: str, label_names) -> None:
    """Each class model (or the one model) as a Hugging Face folder."""
    if conditioning == "per_class":
        for k, name in enumerate(label_names):
            save_pretrained(model_config, jax.tree_util.tree_map(lambda x: x[k], params), workdir / "export" / name)
    else:
        save_pretrained(model_config, params, workdir / "export")


# --- evaluate --------------------------------------------------------------------------------


def evaluate_params(config, workdir: Path, model_config, params, tok, ds, info, summary=None) -> dict:
    """Score val and test, decide under every rule, write predictions, metrics.json, report.md."""
    label_names = info["label_names"]
    k = len(label_names)
    prior = E.log_prior(info["train_class_counts"])
    scored, timings = {}, {}
    splits = {s: ds[s] for s in ("val", "test") if s in config.eval.splits and s in ds}
    if "train" in ds and config.eval.train_sample_per_class > 0:  # for the train/validation gap
        idx = E.stratified_sample(ds["train"].labels, int(config.eval.train_sample_per_class), int(config.seed))
        splits = {"train_sample": ds["train"].subset(idx), **splits}
    for split, data in splits.items():
        t0 = time.time()
        ll, n_tok = class_log_likelihoods(params, data, tok, config, model_config, desc=f"scoring {split}")
        timings[split] = time.time() - t0
        scored[split] = (data, ll, n_tok)
        logging.info("scored %s: %d texts x %d classes in %.1f s", split, len(data), k, timings[split])
    offsets = None
    if "val" in scored:
        v, ll, _ = scored["val"]
        offsets = E.fit_offsets(ll, v.labels)
    rules = list(dict.fromkeys([config.eval.decision, *config.eval.report_rules]))
    results = {}
    for split, (d, ll, n_tok) in scored.items():
        results[split] = E.evaluate_split(ll, d.labels, n_tok, label_names, prior, offsets, rules,
                                          int(config.eval.sample_per_class) if split == "test" else 0, int(config.seed))
        report.write_predictions(workdir / f"predictions_{split}.jsonl", d, ll, n_tok,
                                 E.scores(ll, n_tok, "bayes", prior).argmax(1), label_names)
    out = dict(
        decision=config.eval.decision,
        prior=prior.tolist(),
        offsets=None if offsets is None else offsets.tolist(),
        results=results,
        scoring_wall_s=timings,
    )
    headline = results.get("test", results.get("val", {})).get(config.eval.decision)
    if headline:
        out["accuracy"] = headline["accuracy"]
    report.write_run_report(workdir, config, info, {**(summary or {}), **out})
    return out


def evaluate(config, workdir: str | Path, which: str = "best") -> dict:
    """Eval mode: a finished or interrupted run's checkpoint on the configured splits."""
    workdir = Path(workdir)
    info, model_config, params, step = load_run(config, workdir, which)
    tok, ds = load_data(config, splits=("train", "val", "test"))
    return evaluate_params(config, workdir, model_config, params, tok, ds, info, {"evaluated_step": step})
