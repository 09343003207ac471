"""What a run leaves for people: predictions, metrics.json, report.md, PNGs, the history table."""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from gencls_jax import fileio


def write_predictions(
    path: Path, ds, ll: np.ndarray, n_tokens: np.ndarray, pred: np.ndarray, label_names
) -> None:
    """One JSON line per example: id, label, K log-likelihoods, scored tokens, prediction (Bayes
    rule)."""
    with fileio.atomic_open(path) as f:
        for i in range(len(ds)):
            f.write(
                json.dumps(
                    {
                        "id": str(ds.ids[i]),
                        "label": int(ds.labels[i]),
                        "label_name": label_names[int(ds.labels[i])],
                        "log_likelihoods": [float(x) for x in ll[i]],
                        "n_tokens": int(n_tokens[i]),
                        "prediction": int(pred[i]),
                    }
                )
                + "\n"
            )


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


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def write_run_report(out_dir: Path, info: dict, summary: dict, name: str = "") -> None:
    """metrics.json (everything) and report.md (tables a person reads, titled `name`, default
    the folder's), plus confusion PNGs. Warnings (e.g. class models that barely differ) open the
    report."""
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
                    f"| {tag} | {mm['n']} | {_pct(mm['accuracy'])} | {mm['macro_f1']:.4f} | "
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
    if (out_dir / "curves.png").exists():
        lines += ["", "![curves](curves.png)"]
    fileio.write_text(out_dir / "report.md", "\n".join(lines) + "\n")


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
            f"{_pct(r['accuracy'])} | {loss} | {r['status']} |"
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
    from gencls_jax.evaluate import mcnemar

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
                    f"{_pct(res['accuracy'])} vs {_pct(base_res['accuracy'])} "
                    f"({diff}, McNemar p = {p} on {len(shared)} paired test texts): "
                    f"{word} at alpha {alpha}."
                )
        lines.append(
            f"| {d.name} | {res['n']} | {_pct(res['accuracy'])} | {f1}{diff} | {disc} | {p} |"
        )
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
                    f"{_pct(c['classified_as_own_class'])} |"
                )
        lines += [
            "",
            (
                "(margin = log p(x|own class) - log p(x|other class) under the generating run's "
                "models, nats)"
            ),
        ]
    if verdicts:
        lines += ["", "## Verdict", "", *verdicts]
    return "\n".join(lines) + "\n"
