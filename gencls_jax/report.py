"""What a run leaves for people: predictions, metrics.json, report.md, PNGs, the history table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np


def write_predictions(path: Path, ds, ll: np.ndarray, n_tokens: np.ndarray, pred: np.ndarray, label_names) -> None:
    """One JSON line per example: id, label, K log-likelihoods, scored tokens, prediction (Bayes rule)."""
    with open(path, "w") as f:
        for i in range(len(ds)):
            f.write(json.dumps({
                "id": str(ds.ids[i]),
                "label": int(ds.labels[i]),
                "label_name": label_names[int(ds.labels[i])],
                "log_likelihoods": [float(x) for x in ll[i]],
                "n_tokens": int(n_tokens[i]),
                "prediction": int(pred[i]),
            }) + "\n")


def read_predictions(path: Path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def plot_confusion(matrix: Sequence[Sequence[int]], label_names, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.2 * len(label_names) + 2, 1.2 * len(label_names) + 1.5))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black")
    ax.set_xticks(range(len(label_names)), label_names)
    ax.set_yticks(range(len(label_names)), label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def write_run_report(workdir: Path, config, info: dict, summary: dict) -> None:
    """metrics.json (everything) and report.md (tables a person reads), plus confusion PNGs."""
    workdir = Path(workdir)
    (workdir / "metrics.json").write_text(json.dumps(summary, indent=2))
    names = info["label_names"]
    lines = [f"# Run report: {workdir.name}", "", f"- conditioning: {info['conditioning']}",
             f"- model: {info['model']['n_layer']} layers, width {info['model']['n_embd']}, dtype {info['model']['dtype']}",
             f"- training texts: {info['n_train']} (per class {info['train_class_counts']}, synthetic {info['n_synthetic']})"]
    for key in ("stop_reason", "steps", "epochs_done", "final_train_loss", "train_wall_s", "evaluated_step"):
        if key in summary:
            lines.append(f"- {key}: {summary[key]}")
    if summary.get("offsets") is not None:
        lines.append(f"- calibrated class offsets (fit on val): {[round(x, 3) for x in summary['offsets']]}")
    for split, by_rule in summary.get("results", {}).items():
        lines += ["", f"## {split}", "", "| rule | n | accuracy | macro F1 | F1 gap | " + " | ".join(f"F1 {n}" for n in names) + " |",
                  "| --- " * (5 + len(names)) + "|"]
        for rule, m in by_rule.items():
            for tag, mm in ((rule, m), (f"{rule} (sample)", m.get("sample"))):
                if mm is None:
                    continue
                f1s = " | ".join(f"{mm['per_class'][n]['f1']:.4f}" for n in names)
                lines.append(f"| {tag} | {mm['n']} | {_pct(mm['accuracy'])} | {mm['macro_f1']:.4f} | {mm['f1_gap']:.4f} | {f1s} |")
        head = by_rule.get(summary.get("decision", "bayes")) or next(iter(by_rule.values()))
        png = workdir / f"confusion_{split}.png"
        plot_confusion(head["confusion"], names, png, f"{split}: {summary.get('decision', 'bayes')}")
        lines += ["", f"![confusion {split}]({png.name})"]
    res, rule = summary.get("results", {}), summary.get("decision", "bayes")
    for a, b, what in (("train_sample", "val", "Train (sample) - validation"), ("val", "test", "Validation - test")):
        if a in res and b in res and rule in res[a] and rule in res[b]:
            gap = 100 * (res[a][rule]["accuracy"] - res[b][rule]["accuracy"])
            lines += ["", f"{what} accuracy gap ({rule}): {gap:+.2f} points"]
    if (workdir / "curves.png").exists():
        lines += ["", "![curves](curves.png)"]
    (workdir / "report.md").write_text("\n".join(lines) + "\n")


def history_row(workdir: Path) -> dict:
    """One line of the original 'training history' table for a workdir."""
    workdir = Path(workdir)
    row = dict(experiment=workdir.name, data="-", epochs="-", per_class="-", accuracy=None, final_loss=None, status="no run")
    cfg_path, info_path, met_path = workdir / "config.json", workdir / "run_info.json", workdir / "metrics.json"
    if cfg_path.exists():
        cfg = json.loads(cfg_path.read_text())
        d = cfg.get("data", {})
        row["epochs"] = cfg.get("train", {}).get("epochs", "-")
        extra = " + synthetic" if d.get("extra_train_path") else ""
        row["data"] = (f"{d.get('per_class_limit')} per class" if d.get("per_class_limit") else "full train") + extra
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
    out = ["| experiment | data | epochs | examples per class | accuracy | final loss | status |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        loss = "-" if r["final_loss"] is None else f"{r['final_loss']:.4f}"
        out.append(f"| {r['experiment']} | {r['data']} | {r['epochs']} | {r['per_class']} | {_pct(r['accuracy'])} | {loss} | {r['status']} |")
    return "\n".join(out)
