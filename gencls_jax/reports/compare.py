"""`--mode=report`: several runs compared with the first, in markdown: the history table, test
accuracy and per-class F1, the difference with McNemar's test on the paired test predictions,
the statistics of any synthetic training texts, and a verdict line per run."""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from gencls_jax.reports.report import pct, read_predictions
from gencls_jax.reports.stats import mcnemar


def history_row(workdir: Path) -> dict:
    """One line of the original 'training history' table for a workdir."""
    workdir = Path(workdir)
    row = dict(
        experiment=workdir.name,
        data="-",
        epochs="-",
        per_class="-",
        accuracy=None,
        final_loss=None,
        status="no run",
    )
    cfg_path, info_path, met_path = (
        workdir / "config.json",
        workdir / "run_info.json",
        workdir / "metrics.json",
    )
    if cfg_path.exists():
        cfg = json.loads(cfg_path.read_text())
        d = cfg.get("data", {})
        row["epochs"] = cfg.get("train", {}).get("epochs", "-")
        extra = " + synthetic" if d.get("extra_train_path") else ""
        row["data"] = (
            f"{d.get('per_class_limit')} per class" if d.get("per_class_limit") else "full train"
        ) + extra
        row["status"] = "started"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        counts = info.get("train_class_counts") or []
        row["per_class"] = "/".join(map(str, counts)) if counts else "-"
    if met_path.exists():
        m = json.loads(met_path.read_text())
        row["accuracy"] = m.get("accuracy")
        row["final_loss"] = m.get("final_train_loss")
        row["status"] = m.get("stop_reason", "evaluated")
    return row


def history_table(workdirs: Sequence[str | Path]) -> str:
    rows = [history_row(Path(w)) for w in workdirs]
    out = [
        "| experiment | data | epochs | examples per class | accuracy | final loss | status |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        loss = "-" if r["final_loss"] is None else f"{r['final_loss']:.4f}"
        out.append(
            f"| {r['experiment']} | {r['data']} | {r['epochs']} | {r['per_class']} | "
            f"{pct(r['accuracy'])} | {loss} | {r['status']} |"
        )
    return "\n".join(out)


def _synthetic_stats(workdir: Path) -> dict | None:
    """The statistics `--mode=generate` wrote beside the synthetic file this run trained on."""
    cfg = workdir / "config.json"
    extra = (
        json.loads(cfg.read_text()).get("data", {}).get("extra_train_path") if cfg.exists() else ""
    )
    path = Path(extra).parent / "synthetic_stats.json" if extra else None
    return json.loads(path.read_text()) if path is not None and path.exists() else None


def _test_results(workdir: Path, rule: str) -> tuple[dict | None, dict[str, bool]]:
    """(test metrics under `rule`, {(id, label, repeat): correct under the Bayes rule}) of a run."""
    met, pred = workdir / "metrics.json", workdir / "predictions_test.jsonl"
    results = (
        json.loads(met.read_text()).get("results", {}).get("test", {}).get(rule)
        if met.exists()
        else None
    )
    correct, seen = {}, collections.Counter()
    for r in read_predictions(pred) if pred.exists() else []:
        key = (r["id"], r["label"])  # IMDB's ids repeat across classes (neg/0, pos/0)
        # and a repeat count for any other duplicate
        correct[(*key, seen[key])] = r["prediction"] == r["label"]
        seen[key] += 1
    return results, correct


def comparison_report(
    workdirs: Sequence[str | Path], rule: str = "bayes", alpha: float = 0.05
) -> str:
    """Markdown comparing runs with the first one: the history table, test accuracy and per-class
    F1, the difference with McNemar's test on the paired test predictions, and the statistics
    of any synthetic training texts. Ends with one verdict line per run."""
    dirs = [Path(w) for w in workdirs]
    base_res, base_ok = _test_results(dirs[0], rule)
    lines = [
        "# Comparison",
        "",
        history_table(dirs),
        "",
        f"## Test set, rule '{rule}', against {dirs[0].name}",
        "",
    ]
    names = list((base_res or {}).get("per_class", {}))
    header = [
        "run",
        "n",
        "accuracy",
        *(f"F1 {n}" for n in names),
        "difference",
        "only base right / only run right",
        "McNemar p",
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    verdicts = []
    for d in dirs:
        # the baseline is read once
        res, ok = (base_res, base_ok) if d == dirs[0] else _test_results(d, rule)
        if res is None:
            lines.append(f"| {d.name} | - | not evaluated |" + " |" * (len(names) + 3))
            continue
        f1 = "".join(f"{res['per_class'].get(n, {}).get('f1', float('nan')):.4f} | " for n in names)
        diff, disc, p = "-", "-", "-"
        if d != dirs[0] and base_res is not None:
            delta = 100 * (res["accuracy"] - base_res["accuracy"])
            diff = f"{delta:+.2f} points"
            shared = sorted(set(ok) & set(base_ok))
            if shared:
                t = mcnemar(
                    np.array([base_ok[i] for i in shared]), np.array([ok[i] for i in shared])
                )
                disc, p = f"{t['a_only']} / {t['b_only']}", f"{t['p_value']:.3g}"
                word = (
                    ("better" if delta > 0 else "worse")
                    if t["p_value"] < alpha
                    else "no significant difference"
                )
                verdicts.append(
                    f"- **{d.name}** vs {dirs[0].name}: "
                    f"{pct(res['accuracy'])} vs {pct(base_res['accuracy'])} "
                    f"({diff}, McNemar p = {p} on {len(shared)} paired test texts): "
                    f"{word} at alpha {alpha}."
                )
        lines.append(
            f"| {d.name} | {res['n']} | {pct(res['accuracy'])} | {f1}{diff} | {disc} | {p} |"
        )
    lines += synthetic_section(dirs)
    if verdicts:
        lines += ["", "## Verdict", "", *verdicts]
    return "\n".join(lines) + "\n"


def synthetic_section(dirs: Sequence[Path]) -> list[str]:
    """The statistics of the synthetic training texts each run trained on, if any."""
    lines: list[str] = []
    synth = [(d, s) for d in dirs if (s := _synthetic_stats(d)) is not None]
    if synth:
        lines += [
            "",
            "## Synthetic training texts",
            "",
            (
                "| run | class | generated | kept | mean tokens | distinct-1 | distinct-2 "
                "| mean margin | classified as own class |"
            ),
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for d, s in synth:
            for name, c in s["per_class"].items():
                lines.append(
                    f"| {d.name} | {name} | {c['generated']} | {c['kept']} | "
                    f"{c['mean_tokens']:.1f} | {c['distinct_1']:.3f} | "
                    f"{c['distinct_2']:.3f} | {c['mean_margin']:+.1f} | "
                    f"{pct(c['classified_as_own_class'])} |"
                )
        lines += [
            "",
            (
                "(margin = log p(x|own class) - log p(x|other class) under the generating run's "
                "models, nats)"
            ),
        ]
    return lines
