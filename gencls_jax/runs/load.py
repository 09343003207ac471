"""A trained run, loaded to score and sample with: its parameters alone, no optimizer.

The classifier API, eval, predict, explain and generate load runs here, without the trainer
(`import gencls_jax.classifier` does not import optax).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import jax
from absl import logging

from gencls_jax import conditioning
from gencls_jax.data import compact
from gencls_jax.data.tokenize import Tokenizer, load_tokenizer
from gencls_jax.errors import RunError
from gencls_jax.model import gpt2
from gencls_jax.runs.checkpoint import Checkpointer, RestoreError
from gencls_jax.runs.rules import saved_config
from gencls_jax.runs.workdir import read_run_info
from gencls_jax.system import sharding


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
    if "ensemble" in info:  # made by --mode=eval --workdirs: only its members have checkpoints
        raise RunError(
            f"{workdir} holds an ensemble of runs (--mode=eval --workdirs), no checkpoint of its "
            "own: predict with it, or evaluate it again with --mode=eval --workdirs=... into a "
            "new --workdir"
        )
    cond = conditioning.get(info["conditioning"])
    if not cond.classifies:
        raise RunError(f"{workdir} holds an {cond.name} LM: it has no classes to {purpose}")
    d = config.data
    tok = compact.for_run(
        load_tokenizer(d.tokenizer, d.tokenizer_fallback, d.cache_dir), info
    )  # its own ids
    model_config = gpt2.resolve_config(model_config_from_info(info), config.model)
    model_config = model_config.replace(bos_token_id=tok.bos_id)
    params, step, fallback = restore_params(
        workdir, cond.params_template(model_config, len(info["label_names"])), which
    )
    return LoadedRun(info, model_config, params, step, tok, fallback)


def restore_params(
    workdir: Path, like_params: Any, which: str = "best"
) -> tuple[Any, int, str | None]:
    """(float32 parameters, step, fallback) of the best (or latest) checkpoint in `workdir`: the
    parameters alone, no optimizer; the moving average of them when the run trained with
    `train.ema_decay` > 0 (what it was validated and ranked by). A damaged checkpoint is
    skipped with a warning; `fallback` says which were (None if none)."""
    ckpt_dir = Path(workdir) / "checkpoints"
    if not ckpt_dir.exists():
        raise RunError(f"{workdir} has no checkpoints yet: train first (--mode=train)")
    rep = sharding.replicated(sharding.make_mesh())  # on every device of every process
    like = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), like_params
    )
    # the run's own config (not today's defaults): the metric it ranked its checkpoints by, and
    # the state field it ships ('average' when it kept a moving average of its params)
    saved = saved_config(workdir)
    best_metric = saved.train.best_metric if saved is not None else ""
    field = "average" if saved is not None and float(saved.train.ema_decay) > 0 else "params"
    ckpt = Checkpointer(ckpt_dir, keep=1, best_metric=best_metric, async_save=False)
    try:
        params, step, fallback = ckpt.restore_params(like, which, field)
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
