"""`--mode=add_class`: a trained per_class LM run plus one class, trained alone, as a new run.

Per class, each class model is trained on its own texts only, on its own schedule (the joint
step only stacks them), so a new class needs only its own model: trained on the texts of
`--input` with the run's recipe (its training config, its initial model, its vocabulary, a
compact one included, unchanged), and stacked after the run's K models, whose parameters are
copied as they are. It takes the epochs of a K+1-class run (`train.min_steps` counts the
largest class's steps) and the data order class K of that run draws (stream K); its dropout
draws are its own (they are keyed by the step), so with dropout it equals that class's model
in distribution, without dropout exactly, but for what couples the classes of a run:
`train.max_steps`, and the checkpoint chosen as best and early stopping (here by the new
model's own validation loss, or by the K+1-class validation accuracy with the old models
fixed).

The new workdir W2 is an ordinary run of K+1 classes: `config.json` is the run's with
`data.added_classes` naming W2's `added/class<K>/` (the new class's texts, `train.jsonl` and
`val.jsonl`, 5% of the input held out to validate it), so eval, predict, explain and generate read
W2 as any run; `run_info.json` has the K+1 class counts (the prior) and `added_classes`;
`checkpoints/` and `export/` hold the K+1 models; `history.jsonl` holds add_class's line only;
metrics.json and report.md are W2's evaluation, eval's own: what depends on all classes (the
calibrated rule's offsets, the temperatures, the OOD threshold) is fitted again on the K+1
validation texts (the run's own and the new class's), so predict on W2 applies W2's fits; the
test set is the run's (or --config.data.test_path's). The run's workdir W
is only read. `W2/add_class/` keeps the new class's training log (its checkpoints are removed
once W2's are written); an interrupted add_class resumes with the same command.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from gencls_jax import conditioning
from gencls_jax.commands import preflight
from gencls_jax.commands.evaluate import check_settings, evaluate_params
from gencls_jax.commands.train import initial_model, lm_loss, run_info
from gencls_jax.data import pipeline
from gencls_jax.data.batching import PerClassStream, TrainStream
from gencls_jax.data.inputs import STDIN, Inputs
from gencls_jax.data.sources import Dataset, file_source
from gencls_jax.data.splits import stratified_split
from gencls_jax.errors import DataError, RunError
from gencls_jax.reports.phases import PhaseTimer, fmt_table
from gencls_jax.runs import load, rules
from gencls_jax.runs import workdir as wd
from gencls_jax.runs.checkpoint import Checkpointer
from gencls_jax.runs.lock import LOCK_FILE, WorkdirLock
from gencls_jax.scoring import decide
from gencls_jax.scoring.batched import score_dataset
from gencls_jax.system import fileio
from gencls_jax.training import loop

MIN_TEXTS = 20  # fewer texts than this make no class model, nor a validation text to check it
VAL_FRACTION = 0.05  # of the input, held out (seeded, at least 1) as the new class's validation
SCRATCH = "add_class"  # W2's folder of the new class's training: its log, and resume


def check_addable(info: dict, config, label: str, used: dict) -> None:
    """Refuse, in one line that says why, a run whose classes share parameters or a training
    signal (only per_class LM runs train each class model on its own texts), a label the run
    has (or that cannot name a folder), another compute dtype than the run's, and several
    processes (one model trains in one)."""
    cond, objective = info["conditioning"], config.train.objective
    if cond != "per_class":
        why = {
            "label_prefix": "its classes share one model (each reads it after its label prefix)",
            "discriminative": "its classes share one body and one classification head",
        }.get(cond, "it has no classes")
        raise RunError(
            f"--mode=add_class needs a per_class run: this is a {cond} run, and {why}, so a "
            "class cannot be trained alone; train a new run with the new class's texts"
        )
    if objective != "lm":
        raise RunError(
            f"--mode=add_class needs a run trained on the LM objective: this one was trained on "
            f"train.objective={objective!r}, where every class model learned from every class's "
            "texts (the classes share the training signal), so a class cannot be trained alone; "
            "train a new run with the new class's texts"
        )
    if not label.strip():
        raise DataError("--label: the new class needs a name")
    if "/" in label or "\\" in label or label in (".", ".."):
        raise DataError(
            f"--label={label}: a class's name is also the name of its export folder: "
            "no '/' or '\\', not '.' or '..'"
        )
    if label in info["label_names"]:
        raise DataError(
            f"--label={label}: the run already has that class ({', '.join(info['label_names'])})"
        )
    if "model.dtype" in used:
        raise RunError(
            "--mode=add_class trains the new class model in the run's own compute dtype "
            f"({used['model.dtype'][0]}): leave out --config.model.dtype"
        )
    if jax.process_count() > 1:
        raise RunError(
            "--mode=add_class trains one model in one process: run it without the "
            "multi-process flags"
        )


def check_new_workdir(new_workdir: Path) -> None:
    """W2 must be new (or empty), or hold an unfinished add_class (resumed: `same_request`)."""
    left = [p.name for p in new_workdir.iterdir() if p.name != LOCK_FILE]
    unfinished = (new_workdir / SCRATCH / "request.json").exists()
    if left and (not unfinished or (new_workdir / "run_info.json").exists()):
        shown = ", ".join(sorted(left)[:3]) + (", ..." if len(left) > 3 else "")
        raise RunError(
            f"--new_workdir={new_workdir} is not empty ({shown}): add_class writes a new run "
            "there; name a new or empty folder"
        )


def same_request(scratch: Path, request: dict) -> None:
    """An unfinished add_class in W2 is resumed only with the same run, label and texts."""
    path = scratch / "request.json"
    if path.exists() and json.loads(path.read_text()) != request:
        raise RunError(
            f"{scratch.parent} holds an unfinished add_class of another run, label or input "
            f"({path}): rerun that command to finish it, or name a new --new_workdir"
        )
    if wd.is_lead():
        scratch.mkdir(parents=True, exist_ok=True)
        fileio.write_text(path, json.dumps(request, indent=2))


def texts_digest(inputs: Inputs) -> str:
    return hashlib.sha256(json.dumps([inputs.texts, inputs.ids]).encode()).hexdigest()


def write_class_texts(folder: Path, inputs: Inputs, label: str, config) -> tuple[int, int]:
    """The new class's texts as the run reads data (its text, label and id fields): train.jsonl
    and val.jsonl, the validation texts a seeded VAL_FRACTION of them (at least 1)."""
    d = config.data
    tr, va = stratified_split(np.zeros(len(inputs.texts), np.int64), VAL_FRACTION, config.seed)
    for split, idx in (("train", tr), ("val", va)):
        lines = [
            json.dumps(
                {d.text_field: inputs.texts[i], d.label_field: label, d.id_field: inputs.ids[i]}
            )
            for i in idx
        ]
        if wd.is_lead():
            fileio.write_text(folder / f"{split}.jsonl", "".join(ln + "\n" for ln in lines))
    return len(tr), len(va)


def with_added_class(config, folder: Path) -> ml_collections.ConfigDict:
    """The run's config whose data names the added class's folder too."""
    new = ml_collections.ConfigDict(config.to_dict())
    new.data.added_classes = (*config.data.added_classes, str(folder.resolve()))
    return new


def one_class(ds: Dataset, k: int, label: str) -> Dataset:
    """Class k's texts of `ds`, as a one-class split (class 0, named `label`)."""
    sub = ds.subset(np.flatnonzero(ds.labels == k))
    return dataclasses.replace(sub, labels=np.zeros(len(sub), np.int32), label_names=(label,))


def class_stream(config, ds: Dataset, tok, k: int, batch_size: int | None = None):
    """One class model's batches [1, B, T], in the order class k of the run draws them."""
    rows = pipeline.rows(config, ds, tok)
    return PerClassStream(
        (TrainStream(rows, pipeline.batch_spec(config, batch_size), config.seed, k),)
    )


def validation_fn(config, cond, model_config, val: Dataset, old_ll, k: int, label: str, tok):
    """The run's validation metrics with the old class models fixed: `val_loss`, the new model's
    LM loss on its own validation texts (read from its scores where they are over the training
    rows, as `train.validation_fn` does); `val_accuracy`, the K+1-class decision (uniform prior,
    as in training) on every class's validation texts, the old models' scores `old_ll`."""
    loss_eval = None
    if not pipeline.scoring_rows_are_training_rows(config):
        stream = class_stream(config, one_class(val, k, label), tok, k, config.eval.batch_size)
        loss_eval = loop.make_loss_evaluator(
            config, model_config, lambda: stream.batches(0), stacked=True
        )
    every = dataclasses.replace(val, label_names=(label,))  # every text, scored by one model
    prior = np.log(np.full(k + 1, 1.0 / (k + 1)))
    own = val.labels == k

    def fn(params):
        new_ll, tokens = score_dataset(
            params, cond, every, tok, config, model_config, desc="val accuracy"
        )
        if loss_eval is None:
            out = {"val_loss": lm_loss(new_ll[own, 0], tokens[own])}
        else:
            out = dict(loss_eval(params))
        ll = np.concatenate([old_ll, new_ll], axis=1) + prior
        return {**out, **decide.validation_figures(ll, val.labels)}

    return fn


def train_new_class(config, scratch: Path, run, tok, ds: dict, k: int, label: str):
    """(the new class model's best parameters [1, ...], its training record): one class model
    trained in `scratch` with the run's recipe on class k's training texts of `ds`."""
    cond = conditioning.get("per_class")
    model_config, init = initial_model(config, tok)
    if model_config != run.model_config:
        now, then = dataclasses.asdict(model_config), dataclasses.asdict(run.model_config)
        diff = ", ".join(f"{f} {then[f]} -> {now[f]}" for f in now if now[f] != then[f])
        raise RunError(
            f"model.init={config.model.init} now gives another model than the run's ({diff}): "
            "the new class model could not join its class models"
        )
    old = dataclasses.replace(ds["val"], label_names=tuple(run.info["label_names"]))
    old_ll, _ = score_dataset(run.params, cond, old, tok, config, model_config, desc="old classes")
    solo = ml_collections.ConfigDict(config.to_dict())
    solo.train.class_shards = 1  # one model
    # the epochs of a K+1-class run: train.min_steps counts its largest class's steps
    every = cond.train_stream(config, ds["train"], tok).steps_per_model
    solo.train.update(epochs=loop.run_epochs(config.train, every), min_steps=0)
    stream = class_stream(config, one_class(ds["train"], k, label), tok, k)
    t0 = time.time()
    result = loop.train(
        solo,
        scratch,
        model_config,
        cond.init_params(init, 1),
        stream.batches,
        stream.steps_per_model,
        validation_fn(config, cond, model_config, ds["val"], old_ll, k, label, tok),
        stacked=True,
    )
    record = dict(
        **result.outcome(),
        train_wall_s=time.time() - t0,
    )
    if result.stop_reason == "interrupted":
        return None, record
    params, step, fallback = load.restore_params(scratch, cond.params_template(model_config, 1))
    record.update(restored_step=step, checkpoint_fallback=fallback)
    return params, record


def write_run(new_workdir: Path, config, run, params, tok, ds, added: dict) -> dict:
    """W2 as a trained run leaves it: the checkpoint of the K+1 stacked models (the layout
    `runs.load` restores), export/, config.json and run_info.json (written last: W2 is a run)."""
    cond = conditioning.get("per_class")
    info = run_info(config, cond, run.model_config, tok, ds)
    info["added_classes"] = [*run.info.get("added_classes", []), added]
    ckpt = Checkpointer(
        new_workdir / "checkpoints", keep=1, best_metric=config.train.best_metric, async_save=False
    )
    try:
        ckpt.save(run.step, {"params": params}, {"added_class": added["label"]})
    finally:
        ckpt.close()
    if wd.is_lead():
        with fileio.replaced_folder(new_workdir / "export") as folder:
            cond.export(folder, run.model_config, params, info["label_names"])
        fileio.write_text(new_workdir / "config.json", config.to_json_best_effort(indent=2))
        wd.write_run_info(new_workdir, info)
    return info


def add_class(
    config,
    workdir: str | Path,
    new_workdir: str | Path,
    label: str,
    read_texts: Callable[[], Inputs],
    which: str = "best",
    used: dict | None = None,
) -> dict:
    """`--mode=add_class`: the run in `workdir` (its own config `config`, `used`: what a --config
    changed) plus the class `label` of the texts `read_texts()` gives, as a new run in
    `new_workdir`, which it holds the lock of (`workdir` is only read, as predict reads it).
    Returns W2's evaluation summary."""
    workdir, new_workdir = Path(workdir), Path(new_workdir)
    info = wd.read_run_info(workdir)
    check_addable(info, config, label, used or {})
    check_settings(config)  # eval's, before anything is trained
    if (
        new_workdir.resolve() == workdir.resolve()
        or workdir.resolve() in new_workdir.resolve().parents
    ):
        raise RunError(f"--new_workdir={new_workdir} is inside --workdir: W is only read")
    with WorkdirLock(new_workdir, "add_class"):
        check_new_workdir(new_workdir)
        inputs = read_texts()
        if len(inputs.texts) < MIN_TEXTS:
            raise DataError(
                f"{inputs.source}: {len(inputs.texts)} texts; a new class needs at least "
                f"{MIN_TEXTS} ({VAL_FRACTION:.0%} of them, at least 1, are held out to validate it)"
            )
        for msg in inputs.skipped:
            logging.warning("skipped a bad line: %s", msg)
        preflight.check_paths(config, "train")
        rules.check_data(workdir, config)
        run = load.load_run(config, workdir, which)
        return _add(config, workdir, new_workdir, run, inputs, label, which)


def _add(config, workdir: Path, new_workdir: Path, run, inputs: Inputs, label: str, which: str):
    """add_class's work, under W2's lock: the new class's texts into W2, its model trained, W2
    written as a run and evaluated."""
    timer, t0 = PhaseTimer(), time.time()
    info, k = run.info, len(run.info["label_names"])
    scratch = new_workdir / SCRATCH
    same_request(
        scratch,
        dict(
            workdir=str(workdir.resolve()),
            checkpoint=which,
            step=run.step,
            label=label,
            texts_sha256=texts_digest(inputs),
        ),
    )
    folder = new_workdir / "added" / f"class{k}"
    n_train, n_val = write_class_texts(folder, inputs, label, config)
    config = with_added_class(config, folder)
    with timer.phase("data"):  # the run's data and the new class's, as a later eval reads them
        tok, ds = conditioning.load_data(config, splits=("train", "val", "test"), info=info)
    with timer.phase("train"):
        new_params, record = train_new_class(config, scratch, run, tok, ds, k, label)
    if new_params is None:
        logging.info("interrupted; run the same command again to resume")
        return record
    params = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), run.params, new_params)
    source = inputs.source
    added = dict(
        label=label,
        base_workdir=str(workdir.resolve()),
        base_checkpoint=which,
        base_step=run.step,
        input=file_source(source) if source != STDIN and Path(source).is_file() else source,
        texts=len(inputs.texts),
        skipped=len(inputs.skipped),
        train=n_train,
        val=n_val,
        folder=str(folder.resolve()),
        training=record,
    )
    info = write_run(new_workdir, config, run, params, tok, ds, added)
    shutil.rmtree(scratch / "checkpoints", ignore_errors=True)  # W2's checkpoint has the model
    wd.append_history(
        new_workdir,
        "add_class",
        None,
        base_workdir=added["base_workdir"],
        checkpoint=which,
        base_step=run.step,
        label=label,
        input=source,
        texts=len(inputs.texts),
    )
    summary = dict(
        added_class=added,
        evaluated_step=run.step,
        evaluated_checkpoint=which,
        checkpoint_fallbacks=[f for f in (run.fallback,) if f],
    )
    with timer.phase("score"):
        summary.update(
            evaluate_params(config, new_workdir, run.model_config, params, tok, ds, info, summary)
        )
    summary["add_class_wall_s"] = time.time() - t0
    summary["phases"] = timer.table()
    logging.info("time by phase: %s", fmt_table(summary["phases"]))
    return summary
