"""How far to trust a run, in report.md: calibration (ECE, the reliability diagram), abstaining
(accuracy against coverage) and the out-of-distribution score. The figures are eval's
(`commands/evaluate.py`, from `scoring/calibration.py` and `scoring/ood.py`); this module only
draws and tabulates them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gencls_jax.scoring import calibration
from gencls_jax.system import fileio


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with fileio.atomic_open(path, "wb") as f:
        fig.savefig(f, dpi=100, format="png")
    _pyplot().close(fig)


def plot_reliability(figures: dict, temperature: float | None, path: Path) -> None:
    """The reliability diagram of `figures` (`raw` and `calibrated`: ([N] top posterior, [N]
    correct) or None): per bin of the top posterior, the accuracy (bars) against the mean top
    posterior (dots; on the diagonal when calibrated), the texts per bin below; one panel as
    scored, one at the temperature."""
    plt = _pyplot()
    panels = [("as scored", figures["raw"])]
    if figures.get("calibrated") is not None:
        panels.append((f"temperature {temperature:.3g}", figures["calibrated"]))
    bins = figures["bins"]
    fig, axes = plt.subplots(
        2,
        len(panels),
        figsize=(4.2 * len(panels), 5.2),
        gridspec_kw=dict(height_ratios=[3, 1]),
        squeeze=False,
    )
    for col, (title, (conf, ok)) in enumerate(panels):
        r = calibration.reliability(conf, ok, bins)
        centres = (r["edges"][:-1] + r["edges"][1:]) / 2
        full = r["count"] > 0
        top, bottom = axes[0, col], axes[1, col]
        top.bar(
            centres[full], r["accuracy"][full], width=1 / bins, color="#4c72b0", label="accuracy"
        )
        top.plot(
            centres[full],
            r["confidence"][full],
            "o",
            color="#dd8452",
            ms=4,
            label="mean top posterior",
        )
        top.plot([0, 1], [0, 1], "--", color="gray", lw=1)
        top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
        top.set_title(f"{title}: ECE {calibration.ece(conf, ok, bins):.4f}")
        top.legend(loc="upper left", fontsize=8)
        bottom.bar(centres, r["count"], width=1 / bins, color="#8c8c8c")
        bottom.set(xlim=(0, 1), xlabel="top posterior", ylabel="texts")
    fig.suptitle(f"{figures['split']}: reliability ({bins} bins)")
    fig.tight_layout()
    _save(fig, path)


def plot_coverage(conf: np.ndarray, ok: np.ndarray, table: list[dict], path: Path, title: str):
    """Accuracy against coverage, answering only the texts of highest top posterior; the
    abstention table's thresholds P marked on the curve."""
    plt = _pyplot()
    coverage, accuracy = calibration.coverage_curve(conf, ok)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(coverage, accuracy, color="#4c72b0")
    for row in table:
        if row["answered"]:
            ax.plot(row["coverage"], row["accuracy"], "o", color="#dd8452", ms=4)
            ax.annotate(
                f"P={row['abstain_below']:g}",
                (row["coverage"], row["accuracy"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
    ax.set(xlim=(0, 1.02), xlabel="coverage (share of texts answered)", ylabel="accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def _num(x, fmt: str = ".4f") -> str:
    return "-" if x is None else format(x, fmt)


def calibration_lines(cal: dict) -> list[str]:
    """The calibration section's text and its table of ECE per split."""
    t = cal.get("temperature")
    fitted = (
        f"{_num(cal['ece_calibrated'])} at temperature {t:.4g} (fitted on val; predict's "
        "posteriors use it)"
        if t is not None
        else "no temperature"
        + ("" if cal.get("fitted_on") else ": no validation texts were scored (eval.splits)")
    )
    lines = [
        "",
        f"## Calibration ({cal['split']}, {cal['rule']} rule)",
        "",
        f"Top-label expected calibration error ({cal['bins']} equal-width bins of the top "
        f"posterior): {_num(cal['ece'])} as scored; {fitted}.",
    ]
    for rule, t in (cal.get("temperature_at_bound") or {}).items():
        lines.append(
            f"No temperature for the {rule} rule: its fit on the validation texts ran to {t:.3g}, "
            "an end of its search range (their scores "
            + ("all separate the classes" if t < 1 else "all decide wrongly")
            + "), so its posteriors stay the scores' own."
        )
    lines += ["", "| split | ECE as scored | ECE at the temperature |", "| --- | --- | --- |"]
    for split, e in cal["splits"].items():
        note = " (fitted here)" if split == "val" and e["ece_calibrated"] is not None else ""
        lines.append(f"| {split} | {_num(e['ece'])} | {_num(e['ece_calibrated'])}{note} |")
    return lines


def abstain_lines(cal: dict) -> list[str]:
    """The abstention table: what --abstain_below=P answers on the headline split."""
    lines = [
        "",
        f"## Abstaining ({cal['split']}): `--abstain_below=P`",
        "",
        "predict answers null when the top posterior"
        + (" (at the temperature)" if cal.get("temperature") is not None else "")
        + " is under P:",
        "",
        "| P | answered | coverage | accuracy |",
        "| --- | --- | --- | --- |",
    ]
    for row in cal["abstain"]:
        acc = "-" if row["accuracy"] is None else f"{100 * row['accuracy']:.2f}%"
        lines.append(
            f"| {row['abstain_below']:g} | {row['answered']} | {100 * row['coverage']:.2f}% | "
            f"{acc} |"
        )
    return lines


def ood_lines(o: dict | None) -> list[str]:
    """The out-of-distribution section: the threshold and each split's OOD scores."""
    lines = ["", "## Out of distribution", ""]
    if o is None:
        return lines + ["A classification head has no p(text): no OOD score."]
    if o["threshold"] is None:
        lines.append(
            f"`ood_score` = {o['score']}; no threshold: no validation texts were scored "
            "(eval.splits), so predict writes no `in_distribution`."
        )
    else:
        lines.append(
            f"`ood_score` = {o['score']}; in distribution when <= {o['threshold']:.4f}, the "
            f"threshold that keeps {100 * o['keep']:g}% of the validation texts (eval.ood_keep)."
        )
    if o.get("note"):
        lines += ["", f"> {o['note']}."]
    lines += ["", "| split | n | mean | p05 | p50 | p95 | kept |", "| --- " * 7 + "|"]
    for split, d in o["splits"].items():
        if d["n"]:
            kept = "-" if "kept" not in d else f"{100 * d['kept']:.2f}%"
            lines.append(
                f"| {split} | {d['n']} | {d['mean']:.4f} | {d['p05']:.4f} | {d['p50']:.4f} | "
                f"{d['p95']:.4f} | {kept} |"
            )
    return lines


def sections(out_dir: Path, summary: dict, figures: dict | None) -> list[str]:
    """report.md's calibration, abstention and OOD sections from metrics (`summary`), with the
    reliability and coverage PNGs drawn into `out_dir` from `figures` when given."""
    cal = summary.get("calibration")
    if not cal or not cal.get("split"):
        return []
    lines = calibration_lines(cal)
    split = cal["split"]
    if figures is not None:
        png = out_dir / f"reliability_{split}.png"
        plot_reliability(figures, cal.get("temperature"), png)
        lines += ["", f"![reliability {split}]({png.name})"]
    lines += abstain_lines(cal)
    if figures is not None:
        conf, ok = figures["calibrated"] or figures["raw"]
        png = out_dir / f"coverage_{split}.png"
        plot_coverage(conf, ok, cal["abstain"], png, f"{split}: accuracy against coverage")
        lines += ["", f"![accuracy against coverage {split}]({png.name})"]
    if "ood" in summary:
        lines += ood_lines(summary["ood"])
    return lines
