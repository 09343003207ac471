"""Labels for new texts from the shell (`--mode=predict`): read, score as test texts, decide.

Texts come from a jsonl, csv or txt file (one text per line) or stdin (`data/inputs.py`, with
the training data's readers and one-line errors). They are prepared exactly as eval
prepares test texts (`pipeline.tokenize_dataset`, then the conditioning's own scoring rows), so
the log-likelihoods equal those of eval's predictions_<split>.jsonl for the same texts. Each
output line: id, prediction, per-class log-likelihoods, posteriors under the run's decision rule
(`eval.decision`) at the temperature eval fitted on validation, tokens scored, whether the text
was truncated, and log p(text), its OOD score and whether it is in distribution (at the
threshold eval chose on validation): the same numbers as eval's predictions_<split>.jsonl
(`decide.judge` computes both). `--abstain_below=P`: a null prediction where the top
posterior is under P. A run evaluated without validation texts has no temperature and no
threshold: its posteriors are the scores' own softmax (temperature null) and it writes no
in_distribution, each said once on stderr.
"""

from __future__ import annotations

import collections
import contextlib
import json
import sys
import time
from typing import Iterator

from absl import logging

from gencls_jax.classifier import NO_THRESHOLD, GenerativeClassifier
from gencls_jax.data.inputs import STDIN, Inputs
from gencls_jax.errors import DataError
from gencls_jax.runs import workdir as wd
from gencls_jax.scoring import calibration
from gencls_jax.system import fileio


def prediction_rows(
    clf: GenerativeClassifier,
    inputs: Inputs,
    rule: str,
    abstain_below: float | None = None,
) -> Iterator[dict]:
    """One dict per text: id, prediction (null under `abstain_below`), per-class log-likelihoods
    (a discriminative run: log posteriors), posteriors under `rule` (resolve it first) at its
    temperature, the rule and the temperature, scored tokens (EOS included), the text's own
    tokens, whether it was truncated (`eval.long_text`, else `data.long_text`, is 'truncate'), and
    for a generative run log p(text), the OOD score and (given a threshold) whether it is in
    distribution."""
    ds = clf._dataset(inputs.texts, inputs.ids, inputs.where)
    ll, n_tok = clf.score_dataset(ds, desc="predicting")
    j = clf.judge(ll, n_tok, rule, clf.expert_terms(ds.texts))
    answered = calibration.answered(j.posteriors, abstain_below)
    eos = int(bool(clf.config.data.append_eos))
    lengths = ds.tokens.lengths
    key = "log_likelihoods" if clf.conditioning.generative else "log_posteriors"
    names = clf.label_names
    for i in range(len(ds)):
        row = {
            "id": ds.ids[i],
            "prediction": names[int(j.prediction[i])] if answered[i] else None,
            key: {n: float(v) for n, v in zip(names, ll[i])},
            "posteriors": {n: float(v) for n, v in zip(names, j.posteriors[i])},
            "rule": rule,
            "temperature": j.temperature,
            "n_tokens": int(n_tok[i]),
            "text_tokens": int(lengths[i]),
            "truncated": bool(n_tok[i] < lengths[i] + eos),
        }
        if j.log_marginal is not None:
            row.update(log_marginal=float(j.log_marginal[i]), ood_score=float(j.ood_scores[i]))
        if j.in_distribution is not None:
            row["in_distribution"] = bool(j.in_distribution[i])
        yield row


def fit_warnings(clf: GenerativeClassifier, rule: str) -> list[str]:
    """What predict's output lacks because eval fitted nothing on validation texts (no
    temperature, no OOD threshold), or a keep rate asked that the stored threshold was not
    chosen for: one line each, logged once."""
    out = []
    if rule not in clf.temperatures:
        out.append(
            f"the run has no temperature for the {rule} rule (metrics.json `calibration` says "
            "why: no validation texts scored, a fit that found none, or an eval older than "
            "temperatures): the posteriors are the scores' own softmax (temperature null)"
        )
    if not clf.conditioning.generative:
        out.append(f"a {clf.conditioning.name} run has no p(text): no log_marginal, ood_score")
    elif clf.ood_threshold is None:
        out.append(f"{NO_THRESHOLD}: no in_distribution field")
    elif clf.ood_keep is not None and clf.config.eval.ood_keep != clf.ood_keep:
        out.append(
            f"eval.ood_keep={clf.config.eval.ood_keep:g}, but the run's threshold keeps "
            f"{clf.ood_keep:g} of its validation texts (set by --mode=eval): in_distribution "
            f"uses it; run --mode=eval --config.eval.ood_keep={clf.config.eval.ood_keep:g} to "
            "choose another"
        )
    return out


def run_predict(
    clf: GenerativeClassifier,
    inputs: Inputs,
    output_path: str,
    abstain_below: float | None = None,
) -> dict:
    """`--mode=predict`: `inputs` (`read_inputs`) -> jsonl at `output_path` ('' or '-':
    stdout), under the run's decision rule (`eval.decision`); a null prediction where the top
    posterior is under `abstain_below`. Returns a summary."""
    t0 = time.time()
    if abstain_below is not None:
        calibration.check_abstain(abstain_below)
    for msg in inputs.skipped:
        logging.warning("skipped a bad line: %s", msg)
    rule, why = clf.resolve_rule(clf.config.eval.decision)
    if why:
        logging.warning("eval.decision=%s: %s", clf.config.eval.decision, why)
    for msg in fit_warnings(clf, rule):
        logging.warning("%s", msg)
    counts = collections.Counter()
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
        for row in prediction_rows(clf, inputs, rule, abstain_below):
            out.write(json.dumps(row) + "\n")
            n += 1
            counts["abstained"] += row["prediction"] is None
            counts["out_of_distribution"] += row.get("in_distribution") is False
        out.flush()
    wall = time.time() - t0
    return dict(
        texts=n,
        skipped=len(inputs.skipped),
        rule=rule,
        temperature=clf.temperatures.get(rule),
        abstained=counts["abstained"] if abstain_below is not None else None,
        out_of_distribution=(
            counts["out_of_distribution"] if clf.ood_threshold is not None else None
        ),
        output=output_path or "<stdout>",
        wall_s=wall,
        texts_per_s=n / max(wall, 1e-9),
    )


def predictions_summary(out: dict) -> str:
    """The one line predict prints on stderr when done."""
    skipped = f", skipped {out['skipped']} bad lines" if out["skipped"] else ""
    extra = [
        f"{out[k]} {what}"
        for k, what in (("abstained", "abstained"), ("out_of_distribution", "out of distribution"))
        if out.get(k) is not None
    ]
    if out.get("temperature") is not None:
        extra.insert(0, f"temperature {out['temperature']:.4g}")
    return (
        f"predict: {out['texts']} texts ({out['rule']} rule{skipped}) -> {out['output']} "
        f"in {out['wall_s']:.1f} s ({out['texts_per_s']:.1f} texts/s)"
        + (f"; {', '.join(extra)}" if extra else "")
    )


def run_command(
    config,
    workdir: str,
    which: str,
    inputs: Inputs,
    output: str,
    abstain_below: float | None = None,
) -> None:
    """`--mode=predict`: the run in `workdir` labels `inputs` (null under `abstain_below`,
    checked before the model loads); its history.jsonl gets the command's line (one append, no
    lock: predict only reads the workdir)."""
    if abstain_below is not None:
        calibration.check_abstain(abstain_below)
    clf = GenerativeClassifier.load(workdir, which, config)
    out = run_predict(clf, inputs, output, abstain_below)
    wd.note_read(workdir, "predict", which, inputs.source, texts=out["texts"], output=out["output"])
    print(predictions_summary(out), file=sys.stderr)
