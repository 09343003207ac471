"""Labels for new texts from the shell (`--mode=predict`): read, score as test texts, decide.

Texts come from a jsonl, csv or txt file (one text per line) or stdin (`data/inputs.py`, with
the training data's readers and one-line errors). They are prepared exactly as eval
prepares test texts (`pipeline.tokenize_dataset`, then the conditioning's own scoring rows), so
the log-likelihoods equal those of eval's predictions_<split>.jsonl for the same texts. Each
output line: id, prediction, per-class log-likelihoods, posteriors under the run's decision rule
(`eval.decision`), tokens scored and whether the text was truncated.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import Iterator

from absl import logging

from gencls_jax.classifier import GenerativeClassifier
from gencls_jax.data.inputs import STDIN, Inputs
from gencls_jax.errors import DataError
from gencls_jax.runs import workdir as wd
from gencls_jax.scoring.decide import posteriors
from gencls_jax.system import fileio


def prediction_rows(
    clf: GenerativeClassifier,
    inputs: Inputs,
    rule: str,
) -> Iterator[dict]:
    """One dict per text: id, prediction, per-class log-likelihoods (a discriminative run: log
    posteriors), posteriors under `rule` (resolve it first), scored tokens (EOS included), the
    text's own tokens, whether it was truncated (`data.long_text='truncate'`)."""
    ds = clf._dataset(inputs.texts, inputs.ids, inputs.where)
    ll, n_tok = clf.score_dataset(ds, desc="predicting")
    scores = clf.decision_scores(ll, n_tok, rule)
    post = posteriors(scores)
    pred = scores.argmax(1)
    eos = int(bool(clf.config.data.append_eos))
    lengths = ds.tokens.lengths
    key = "log_likelihoods" if clf.conditioning.generative else "log_posteriors"
    names = clf.label_names
    for i in range(len(ds)):
        yield {
            "id": ds.ids[i],
            "prediction": names[int(pred[i])],
            key: {n: float(v) for n, v in zip(names, ll[i])},
            "posteriors": {n: float(v) for n, v in zip(names, post[i])},
            "rule": rule,
            "n_tokens": int(n_tok[i]),
            "text_tokens": int(lengths[i]),
            "truncated": bool(n_tok[i] < lengths[i] + eos),
        }


def run_predict(clf: GenerativeClassifier, inputs: Inputs, output_path: str) -> dict:
    """`--mode=predict`: `inputs` (`read_inputs`) -> jsonl at `output_path` ('' or '-':
    stdout), under the run's decision rule (`eval.decision`). Returns a summary."""
    t0 = time.time()
    for msg in inputs.skipped:
        logging.warning("skipped a bad line: %s", msg)
    rule, why = clf.resolve_rule(clf.config.eval.decision)
    if why:
        logging.warning("eval.decision=%s: %s", clf.config.eval.decision, why)
    # a file is written under a temporary name and renamed when complete: an interrupted
    # predict leaves an existing --output as it was
    with contextlib.ExitStack() as stack:
        if output_path in ("", STDIN):
            out = sys.stdout
        else:
            try:
                out = stack.enter_context(fileio.atomic_open(output_path))
            except OSError as e:
                raise DataError(
                    f"--output={output_path}: cannot write there ({e.strerror})"
                ) from None
        n = 0
        for row in prediction_rows(clf, inputs, rule):
            out.write(json.dumps(row) + "\n")
            n += 1
        out.flush()
    wall = time.time() - t0
    return dict(
        texts=n,
        skipped=len(inputs.skipped),
        rule=rule,
        output=output_path or "<stdout>",
        wall_s=wall,
        texts_per_s=n / max(wall, 1e-9),
    )


def predictions_summary(out: dict) -> str:
    """The one line predict prints on stderr when done."""
    skipped = f", skipped {out['skipped']} bad lines" if out["skipped"] else ""
    return (
        f"predict: {out['texts']} texts ({out['rule']} rule{skipped}) -> {out['output']} "
        f"in {out['wall_s']:.1f} s ({out['texts_per_s']:.1f} texts/s)"
    )


def run_command(config, workdir: str, which: str, inputs: Inputs, output: str) -> None:
    """`--mode=predict`: the run in `workdir` labels `inputs`; its history.jsonl gets the
    command's line (one append, no lock: predict only reads the workdir)."""
    clf = GenerativeClassifier.load(workdir, which, config)
    out = run_predict(clf, inputs, output)
    wd.note_read(workdir, "predict", which, inputs.source, texts=out["texts"], output=out["output"])
    print(predictions_summary(out), file=sys.stderr)
