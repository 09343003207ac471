"""What an evaluation leaves for people: predictions, metrics.json, report.md, confusion PNGs.

The comparison of several runs (`--mode=report`) is `reports/compare.py`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from gencls_jax.reports import confidence
from gencls_jax.system import fileio


def write_predictions(
    path: Path,
    ds,
    ll: np.ndarray,
    n_tokens: np.ndarray,
    pred: np.ndarray,
    label_names,
    extra: dict | None = None,
) -> None:
    """One JSON line per example: id, label, K log-likelihoods, scored tokens, prediction (Bayes
    rule), then a value per text of each `extra` column (field name -> [N] array; booleans stay
    booleans)."""
    extra = extra or {}
    with fileio.atomic_open(path) as f:
        for i in range(len(ds)):
            row = {
                "id": str(ds.ids[i]),
                "label": int(ds.labels[i]),
                "label_name": label_names[int(ds.labels[i])],
                "log_likelihoods": [float(x) for x in ll[i]],
                "n_tokens": int(n_tokens[i]),
                "prediction": int(pred[i]),
            }
            row.update({k: v[i].item() for k, v in extra.items()})
            f.write(json.dumps(row) + "\n")


def read_predictions(path: Path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def plot_confusion(matrix: Sequence[Sequence[int]], label_names, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.2 * len(label_names) + 2, 1.2 * len(label_names) + 1.5))
    image = ax.imshow(m, cmap="Blues", vmin=0, vmax=max(int(m.max()), 1))
    for (i, j), v in np.ndenumerate(m):  # dark text on light cells, white on dark ones
        r, g, b, _ = image.cmap(image.norm(v))
        ax.text(
            j,
            i,
            str(v),
            ha="center",
            va="center",
            color="black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white",
        )
    ax.set_xticks(range(len(label_names)), label_names)
    ax.set_yticks(range(len(label_names)), label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    with fileio.atomic_open(path, "wb") as f:
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)


def confusion_table(matrix: Sequence[Sequence[int]], label_names) -> list[str]:
    """The confusion matrix as markdown (rows: true class, columns: predicted)."""
    lines = [
        "| true \\ predicted | " + " | ".join(label_names) + " |",
        "| --- " * (len(label_names) + 1) + "|",
    ]
    for name, row in zip(label_names, matrix):
        lines.append(f"| {name} | " + " | ".join(str(int(v)) for v in row) + " |")
    return lines


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def write_run_report(
    out_dir: Path, info: dict, summary: dict, name: str = "", figures: dict | None = None
) -> None:
    """metrics.json (everything) and report.md (tables a person reads, titled `name`, default
    the folder's), plus confusion PNGs and, given the calibration `figures` (eval's arrays, not
    in metrics.json), the reliability diagram and accuracy against coverage. Warnings (e.g.
    class models that barely differ) open the report."""
    out_dir = Path(out_dir)
    fileio.write_text(out_dir / "metrics.json", json.dumps(summary, indent=2))
    names = info["label_names"]
    lines = [f"# Run report: {name or out_dir.name}", ""]
    lines += [f"> **{w}**" for w in summary.get("warnings", [])]
    lines += [
        "" if summary.get("warnings") else None,
        f"- conditioning: {info['conditioning']}",
        (
            f"- model: {info['model']['n_layer']} layers, width {info['model']['n_embd']}, "
            f"dtype {info['model']['dtype']}"
        ),
        (
            f"- training texts: {info['n_train']} (per class {info['train_class_counts']}, "
            f"synthetic {info['n_synthetic']})"
        ),
    ]
    lines = [x for x in lines if x is not None]
    for key in (
        "stop_reason",
        "steps",
        "epochs_done",
        "final_train_loss",
        "train_wall_s",
        "train_calls",
        "best_step",
        "evaluated_step",
        "evaluated_checkpoint",
    ):
        if key in summary:
            lines.append(f"- {key}: {summary[key]}")
    prov = summary.get("provenance", {})
    if prov:
        lines.append(f"- code: git {prov.get('git_revision')}")
        for split, srcs in (prov.get("data") or {}).items():
            lines.append(f"- {split} data: {'; '.join(_source(s) for s in srcs) or 'unknown'}")
    if summary.get("offsets") is not None:
        lines.append(
            f"- calibrated class offsets (fit on val): {[round(x, 3) for x in summary['offsets']]}"
        )
    if summary.get("ngram"):
        lines.append(ngram_line(summary["ngram"]))
    lines += ensemble_lines(summary.get("ensemble"))
    lines += search_lines(summary.get("search"))
    for split, by_rule in summary.get("results", {}).items():
        lines += [
            "",
            f"## {split}",
            "",
            "| rule | n | accuracy | macro F1 | F1 gap | "
            + " | ".join(f"F1 {n}" for n in names)
            + " |",
            "| --- " * (5 + len(names)) + "|",
        ]
        for rule, m in by_rule.items():
            for tag, mm in ((rule, m), (f"{rule} (sample)", m.get("sample"))):
                if mm is None:
                    continue
                f1s = " | ".join(f"{mm['per_class'][n]['f1']:.4f}" for n in names)
                lines.append(
                    f"| {tag} | {mm['n']} | {pct(mm['accuracy'])} | {mm['macro_f1']:.4f} | "
                    f"{mm['f1_gap']:.4f} | {f1s} |"
                )
        rule = summary.get("decision", "bayes")
        head = by_rule.get(rule) or next(iter(by_rule.values()))
        png = out_dir / f"confusion_{split}.png"
        plot_confusion(head["confusion"], names, png, f"{split}: {rule}")
        lines += ["", *per_class_table(head["per_class"], rule)]
        lines += [
            "",
            f"Confusion matrix ({rule}):",
            "",
            *confusion_table(head["confusion"], names),
            "",
            f"![confusion {split}]({png.name})",
        ]
    res, rule = summary.get("results", {}), summary.get("decision", "bayes")
    for a, b, what in (
        ("train_sample", "val", "Train (sample) - validation"),
        ("val", "test", "Validation - test"),
    ):
        if a in res and b in res and rule in res[a] and rule in res[b]:
            gap = 100 * (res[a][rule]["accuracy"] - res[b][rule]["accuracy"])
            lines += ["", f"{what} accuracy gap ({rule}): {gap:+.2f} points"]
    lines += confidence.sections(out_dir, summary, figures)
    if (out_dir / "curves.png").exists():
        lines += ["", "![curves](curves.png)"]
    fileio.write_text(out_dir / "report.md", "\n".join(lines) + "\n")


def ensemble_lines(ens: dict | None) -> list[str]:
    """report.md's table of an ensemble's members (`--mode=eval --workdirs`): each one's accuracy
    in its own eval beside its Bayes-rule accuracy on the ensemble's texts."""
    if not ens:
        return []
    rows = [
        "",
        f"Ensemble of {len(ens['members'])} runs ({ens['rule']}; the lines above are the first "
        f"member's); texts every member has: {ens['texts']}",
        "",
        "| member | conditioning | objective | size | seed | own val | own test | "
        "val here (bayes) | test here (bayes) |",
        "| --- " * 9 + "|",
    ]
    for m in ens["members"]:
        own, here = m["own_accuracy"], m["accuracy_bayes"]
        rows.append(
            f"| {m['workdir']} | {m['conditioning']} | {m['objective']} | {m['size']} | "
            f"{m['seed']} | {pct(own.get('val'))} | {pct(own.get('test'))} | "
            f"{pct(here.get('val'))} | {pct(here.get('test'))} |"
        )
    return rows


def search_section(record: dict, results: dict, rule: str) -> dict:
    """metrics.json's `search`: the record of the search that chose this run
    (`commands/search.py`) with the chosen run's validation - test accuracy gap under `rule`
    (None without both splits): validation chose it, so the test figure is the unbiased one."""
    val, test = (results.get(s, {}).get(rule, {}).get("accuracy") for s in ("val", "test"))
    gap = None if val is None or test is None else val - test
    return {**record, "val_test_gap": gap, "gap_rule": rule}


def search_lines(search: dict | None) -> list[str]:
    """report.md's table of the search that chose the run: each candidate's overrides, its
    validation figure (train.best_metric at its best checkpoint), steps and training time."""
    if not search:
        return []
    metric, kept = search["metric"], search.get("kept", [search.get("chosen")])
    what, tag = ("ensemble", "kept") if "kept" in search else ("chosen run", "chosen")
    how = (  # search.ensemble > 1 keeps several candidates, with no min_gain
        f"search.ensemble {search['ensemble']}"
        if "kept" in search
        else f"search.min_gain {search['min_gain']:g}"
    )
    rows = [
        "",
        f"Search on the validation texts (train.best_metric {metric}, {how}): {search['reason']}",
        "",
        f"| candidate | overrides | {metric} | steps | best step | stop | train s |",
        "| --- " * 7 + "|",
    ]
    for c in search["candidates"]:
        name = f"**{c['index']}** ({tag})" if c["index"] in kept else c["index"]
        told = ", ".join(f"{k}={v}" for k, v in c["overrides"].items()) or "(the run's own)"
        value = "-" if c["value"] is None else f"{c['value']:.4f}"
        rows.append(
            f"| {name} | {told} | {value} | {c['steps']} | {c['best_step']} | "
            f"{c['stop_reason']} | {c['train_wall_s']:.0f} |"
        )
    if search.get("val_test_gap") is not None:
        rows += [
            "",
            f"The {what}'s validation - test accuracy gap ({search['gap_rule']}): "
            f"{100 * search['val_test_gap']:+.2f} points (validation chose it: test is the "
            "unbiased figure)",
        ]
    return rows


def ngram_line(g: dict) -> str:
    """report.md's line on the n-gram expert (eval's `ngram`): its weight and what it gave."""
    if g.get("note"):
        return f"- n-gram expert: off ({g['note']})"
    return (
        f"- n-gram expert (word 1-{g['order']} grams, alpha {g['alpha']:g}): weight "
        f"{g['weight']:g} of {g['grid']}, chosen by val {g.get('select', 'accuracy')} "
        f"({g['rule']} rule): val accuracy {pct(g['val_accuracy_with'])} with, "
        f"{pct(g['val_accuracy_without'])} without, {pct(g['val_accuracy_alone'])} alone"
    )


def per_class_table(per_class: dict, rule: str) -> list[str]:
    """Precision, recall, F1 and support of each class under `rule`, as markdown rows."""
    rows = [
        f"Per class ({rule}):",
        "",
        "| class | precision | recall | F1 | support |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, m in per_class.items():
        rows.append(
            f"| {name} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | "
            f"{m['support']} |"
        )
    return rows


def _source(src: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in src.items()) if src else "unknown"
