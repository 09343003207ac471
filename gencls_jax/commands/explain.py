"""`--mode=explain`: why the classifier decided, for a few texts: an HTML page and jsonl.

The numbers are `scoring.explain`'s (`GenerativeClassifier.explain` from Python), the page
`reports.explain_page`'s; here: where they go (`--output`: the page and the jsonl never share a
name; `-`: the jsonl on stdout), and the line per text the command prints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Sequence

from absl import logging

from gencls_jax import conditioning
from gencls_jax.classifier import GenerativeClassifier
from gencls_jax.data.inputs import Inputs
from gencls_jax.errors import DataError, RunError
from gencls_jax.reports.explain_page import render_html
from gencls_jax.runs import workdir as wd
from gencls_jax.scoring.explain import Explanation, explain_texts
from gencls_jax.system import fileio

DEFAULT_OUTPUT = "explain.html"  # the page, when --output is not given


def output_paths(output: str | Path) -> tuple[Path, Path]:
    """(page, jsonl) for `--output`: `x.jsonl` names the jsonl (the page is x.html), anything
    else the page (the jsonl is beside it, .jsonl); the two never share a name."""
    output = Path(output)
    if output.suffix.lower() == ".jsonl":
        return output.with_suffix(".html"), output
    return output, output.with_suffix(".jsonl")


def write_jsonl(explanations: Sequence[Explanation], f: IO[str]) -> None:
    for e in explanations:
        f.write(json.dumps(e.to_json(), ensure_ascii=False) + "\n")


def write_explanations(
    explanations: Sequence[Explanation], output: str | Path, title: str = "", meta: str = ""
) -> tuple[Path, Path]:
    """The HTML page and the same numbers as jsonl, at `output_paths(output)`, each replaced
    whole (an interrupted command leaves the old files); returns (page, jsonl)."""
    page, jsonl = output_paths(output)
    fileio.write_text(page, render_html(explanations, title, meta))
    with fileio.atomic_open(jsonl) as f:
        write_jsonl(explanations, f)
    return page, jsonl


def summary_line(e: Explanation) -> str:
    """One line per text, printed by the explain command."""
    return (
        f"{e.id}: {e.predicted} over {e.compared}, margin {e.margin:+.3f} = tokens "
        f"{e.token_sum:+.3f} + prior {e.prior_term:+.3f}"
        + (f" + n-gram {e.ngram_term:+.3f}" if e.ngram_term else "")
        + f" ({e.rule}, {e.n_scored} tokens"
        f"{', truncated' if e.truncated else ''})"
    )


def check_explainable(workdir: str) -> None:
    """A discriminative run or an ensemble fails here, in one line, before any parameters are
    restored."""
    info = wd.read_run_info(Path(workdir))
    if "ensemble" in info:
        raise RunError(
            f"{workdir} holds an ensemble of runs: its members' per-token likelihoods differ "
            "(explain one member)"
        )
    cond = conditioning.get(info["conditioning"])
    if not cond.generative or not cond.classifies:
        raise RunError(
            f"{workdir} holds a {cond.name} run: it has no per-token likelihoods to explain "
            "(explain needs a per_class or label_prefix run; --mode=predict gives its posteriors)"
        )


def run_command(
    config, workdir: str, which: str, texts: Inputs, *, against: str | None, output: str
) -> None:
    """`--mode=explain`: the page and the jsonl (`output`; '-': the jsonl on stdout, no page),
    one line per text, and the command's line in the run's history.jsonl (no lock: explain
    only reads the workdir)."""
    for msg in texts.skipped:
        logging.warning("skipped a bad line: %s", msg)
    clf = GenerativeClassifier.load(workdir, which, config)
    exps = explain_texts(
        clf, texts.texts, texts.ids, texts.where, against=against, rule=config.eval.decision
    )
    meta = (
        f"run {workdir} ({which} checkpoint), {clf.conditioning.name}, classes "
        f"{', '.join(clf.label_names)}; decision rule {exps[0].rule if exps else ''}"
    )
    lines_to = sys.stdout
    if output == "-":  # the jsonl on stdout, no page; the lines go to stderr
        write_jsonl(exps, sys.stdout)
        written, lines_to = "<stdout>", sys.stderr
    else:
        try:
            page_jsonl = write_explanations(exps, output or DEFAULT_OUTPUT, meta=meta)
        except OSError as e:
            raise DataError(f"--output={output}: cannot write there ({e.strerror})") from None
        written = ", ".join(map(str, page_jsonl))
    wd.note_read(workdir, "explain", which, texts.source, texts=len(exps), output=written)
    for e in exps:
        print(summary_line(e), file=lines_to)
    skipped_note = f" (skipped {len(texts.skipped)} bad lines)" if texts.skipped else ""
    print(f"-> {written}{skipped_note}", file=lines_to)
