"""Test accuracy against training examples per class on IMDB: our runs beside the same-data
baselines (issue 14's learning curve), as a markdown table and a PNG.

    python bench/learning_curve.py --ours bench/results/2026-11-25_h100_accuracy \
        --baselines bench/results/2026-11-25_cpu_baselines --png docs/learning_curve.png

--ours: a folder of run folders named by bench/accuracy_gpu.sh (imdb_<method>,
imdb<N>_<method>_s<seed>), each with its metrics.json; --baselines: bench/baselines.py's
results (imdb_full.json, imdb_<N>.json). Seeds are averaged (mean, min-max); each point says
how many seeds it has.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

FULL = 12500  # IMDB's examples per class in train (the x position of "full")
METHODS = {
    "decision": "generative, decision-trained (label_prefix)",
    "disc": "discriminative head (same init)",
}
BASELINES = {"tfidf_lr": "TF-IDF + LR", "nbsvm": "NBSVM", "mnb": "multinomial NB"}


def ours(folder: Path) -> dict[tuple[str, int], list[float]]:
    out = defaultdict(list)
    for run in sorted(folder.iterdir()):
        m = re.fullmatch(r"imdb(\d*)_(decision|disc)(?:_s\d+)?", run.name)
        if m and (run / "metrics.json").exists():
            acc = json.loads((run / "metrics.json").read_text()).get("accuracy")
            if acc is not None:
                out[(m.group(2), int(m.group(1) or FULL))].append(100 * acc)
    return out


def baselines(folder: Path) -> dict[tuple[str, int], list[float]]:
    out = defaultdict(list)
    for path in sorted(folder.glob("imdb_*.json")):
        r = json.loads(path.read_text())
        n = FULL if path.stem == "imdb_full" else int(path.stem.split("_")[1])
        for run in r["runs"]:
            for method, res in run["methods"].items():
                if method in BASELINES:
                    out[(method, n)].append(100 * res["test"]["accuracy"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ours", type=Path, required=True)
    ap.add_argument("--baselines", type=Path, required=True)
    ap.add_argument("--png", type=Path, default=None)
    args = ap.parse_args()
    points = {**{(k[0], k[1]): v for k, v in ours(args.ours).items()}, **baselines(args.baselines)}
    names = {**METHODS, **BASELINES}
    sizes = sorted({n for _, n in points})
    head = " | ".join("full (12,500)" if n == FULL else f"{n:,}" for n in sizes)
    print(f"| method | {head} |\n| --- |" + " --- |" * len(sizes))
    for key, label in names.items():
        cells = []
        for n in sizes:
            v = points.get((key, n))
            if not v:
                cells.append("not run")
            elif len(v) == 1:
                cells.append(f"{v[0]:.2f}")
            else:
                cells.append(f"{np.mean(v):.2f} ({min(v):.2f}-{max(v):.2f}, {len(v)} seeds)")
        print(f"| {label} | " + " | ".join(cells) + " |")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for key, label in names.items():
            if not any(points.get((key, n)) for n in sizes):
                continue
            # a size not run is a gap in the line, not a straight line across it
            xs = sizes
            ys = [np.mean(points[(key, n)]) if points.get((key, n)) else np.nan for n in xs]
            lo = [y - min(points[(key, n)]) if points.get((key, n)) else 0 for n, y in zip(xs, ys)]
            hi = [max(points[(key, n)]) - y if points.get((key, n)) else 0 for n, y in zip(xs, ys)]
            style = "o-" if key in METHODS else "s--"
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt=style, capsize=3, label=label)
        ax.set_xscale("log")
        ax.set_xticks(sizes, ["full" if n == FULL else str(n) for n in sizes])
        ax.set_xlabel("training examples per class (IMDB; validation held out of them)")
        ax.set_ylabel("test accuracy, 25,000 reviews (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        args.png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.png, dpi=110)


if __name__ == "__main__":
    main()
