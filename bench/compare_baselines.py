"""Our test predictions beside a baseline's on the same texts: accuracy with its 95% interval,
and McNemar's test on the paired predictions (issue 14's protocol for full IMDB).

    python bench/compare_baselines.py --ours runs/x/predictions_test.jsonl \
        --baseline /tmp/baselines/imdb_full/predictions/imdb_full_seed0_tfidf_lr.jsonl [...]

Both files are jsonl with `id`, `label` and `prediction` (run.py's predictions_test.jsonl and
bench/baselines.py's predictions/*.jsonl). Texts are paired by (id, label, repeat): IMDB's ids
repeat across the two classes.
"""

from __future__ import annotations

import argparse
import collections
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from run_outputs import records  # noqa: E402

from gencls_jax.reports.stats import mcnemar  # noqa: E402


def correct_by_text(path: str) -> dict[tuple, bool]:
    out, seen = {}, collections.Counter()
    for r in records(path):  # plain or gzipped (lease records keep them gzipped)
        key = (str(r["id"]), int(r["label"]))
        out[(*key, seen[key])] = int(r["prediction"]) == int(r["label"])
        seen[key] += 1
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k / n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ours", required=True, help="our predictions_test.jsonl")
    ap.add_argument(
        "--baseline",
        action="append",
        required=True,
        help="a baseline's predictions jsonl (repeatable)",
    )
    args = ap.parse_args()
    ours = correct_by_text(args.ours)
    rows = [("ours", args.ours, ours)] + [
        (Path(b).stem, b, correct_by_text(b)) for b in args.baseline
    ]
    print(
        "| predictions | n | accuracy | 95% interval | only ours right / only it right | McNemar p |"  # noqa: E501
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, _, correct in rows:
        n, k = len(correct), sum(correct.values())
        lo, hi = wilson(k, n)
        cmp = "-"
        if correct is not ours:
            shared = sorted(set(correct) & set(ours))
            if len(shared) != len(ours):
                raise SystemExit(
                    f"{name}: {len(shared)} of our {len(ours)} texts paired; not the same test set"
                )
            t = mcnemar([ours[i] for i in shared], [correct[i] for i in shared])
            cmp = f"{t['a_only']} / {t['b_only']} | {t['p_value']:.3g}"
        print(
            f"| {name} | {n} | {100 * k / n:.2f}% | {100 * lo:.2f}-{100 * hi:.2f}% | {cmp} |"
            + ("" if cmp != "-" else " - |")
        )


if __name__ == "__main__":
    main()
