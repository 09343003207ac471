"""Issue 24's lever table: validation accuracy of each lever's seeds and of their ensemble.

    python bench/levers.py RUNS [--out levers.json]

RUNS holds one workdir per run, named SET_LEVER_sSEED (e.g. trec_base_s0, sst2_adv_s2), each
trained and evaluated on validation only (`--config.eval.splits="('val',)"`) on one shared
validation split (`data.split_seed` fixed, or the set's own `data.val_path`). From each run's
predictions_val.jsonl (log p(text | c) per class) and metrics.json (the log prior):
  seeds     each seed's accuracy under Bayes' rule, argmax_c log p(text | c) + log p(c)
            (the language models alone: the n-gram expert's weight is left out)
  mean      their mean and range (max - min)
  ensemble  the seeds' float64 mean log-likelihood under the same rule: what
            `search.ensemble` / `--mode=eval --workdirs` ship
  d_mean, d_ens   the lever minus the set's 'base' lever (same seeds)
Validation only: this chooses levers, test is scored once for the recipe that ships.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from run_outputs import predictions_file, records

NAME = re.compile(r"^(?P<set>[a-z0-9]+)_(?P<lever>[A-Za-z0-9.\-]+)_s(?P<seed>\d+)$")


def read_run(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(ids, labels [N], log-likelihoods [N, K], log prior [K]) of one run's validation."""
    rows = records(predictions_file(folder, "val"))
    prior = np.asarray(json.loads((folder / "metrics.json").read_text())["prior"], np.float64)
    ids = [r["id"] for r in rows]
    labels = np.array([r["label"] for r in rows])
    ll = np.array([r["log_likelihoods"] for r in rows], np.float64)
    return ids, labels, ll, prior


def accuracy(ll: np.ndarray, prior: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(ll + prior, axis=1) == labels))


def lever_table(root: Path) -> dict:
    groups: dict[tuple[str, str], dict[int, Path]] = defaultdict(dict)
    for d in sorted(root.iterdir()):
        m = NAME.match(d.name)
        if m and predictions_file(d, "val").exists() and (d / "metrics.json").exists():
            groups[m["set"], m["lever"]][int(m["seed"])] = d
    out = {}
    for (name, lever), runs in sorted(groups.items()):
        seeds = sorted(runs)
        read = [read_run(runs[s]) for s in seeds]
        ids, labels, _, prior = read[0]
        for other_ids, other_labels, _, _ in read[1:]:
            if other_ids != ids or not np.array_equal(other_labels, labels):
                raise SystemExit(f"{name}_{lever}: the seeds did not score the same validation")
        accs = [accuracy(ll, prior, labels) for _, _, ll, _ in read]
        mean_ll = np.mean([ll for _, _, ll, _ in read], axis=0)
        out[f"{name}/{lever}"] = {
            "set": name,
            "lever": lever,
            "seeds": seeds,
            "accuracy": accs,
            "mean": float(np.mean(accs)),
            "range": float(np.max(accs) - np.min(accs)),
            "ensemble": accuracy(mean_ll, prior, labels),
            "n_val": len(labels),
        }
    for row in out.values():
        base = out.get(f"{row['set']}/base")
        same = base is not None and base["seeds"] == row["seeds"]
        row["d_mean"] = row["mean"] - base["mean"] if same else None
        row["d_ens"] = row["ensemble"] - base["ensemble"] if same else None
    return out


def print_table(rows: dict) -> None:
    print(
        "| set | lever | val texts | seeds | each seed | mean (range) | ensemble | d_mean | d_ens |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    pct = lambda x: "-" if x is None else f"{100 * x:+.2f}"  # noqa: E731
    for r in rows.values():
        each = " / ".join(f"{100 * a:.2f}" for a in r["accuracy"])
        print(
            f"| {r['set']} | {r['lever']} | {r['n_val']} | {','.join(map(str, r['seeds']))} | "
            f"{each} | {100 * r['mean']:.2f} ({100 * r['range']:.2f}) | "
            f"{100 * r['ensemble']:.2f} | {pct(r['d_mean'])} | {pct(r['d_ens'])} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", type=Path)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    rows = lever_table(a.runs)
    if not rows:
        raise SystemExit(f"no SET_LEVER_sSEED runs with predictions_val.jsonl in {a.runs}")
    print_table(rows)
    if a.out:
        a.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
