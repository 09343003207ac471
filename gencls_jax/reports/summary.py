"""The end of a training run, for a person: a few lines read in a few seconds.

Test accuracy with its 95% confidence interval (`stats.wilson_interval`), per-class F1, the
validation accuracy, any damaged checkpoint skipped, where the report is, how long each phase
took, and the commands to try next.
"""

from __future__ import annotations

import shlex

from gencls_jax.reports.stats import wilson_interval


def end_of_run(
    workdir: str, out: dict, decision: str, phases: str = "", members: tuple = ()
) -> str:
    """The summary lines of a finished train (or eval) run; `out` is its metrics dict. A damaged
    checkpoint skipped on the way (`checkpoint_fallbacks`) is said here too, not only in the
    log above it. `members`: an ensemble's runs (it is predicted with, not evaluated or
    explained: the next commands say so)."""
    results = out.get("results", {})
    split = "test" if "test" in results else "val"
    m = results.get(split, {}).get(decision)
    w = shlex.quote(str(workdir))
    lines = []
    if m:
        n = int(m["n"])
        lo, hi = wilson_interval(round(m["accuracy"] * n), n)
        lines.append(
            f"{split} accuracy ({decision}): {100 * m['accuracy']:.1f}% "
            f"(95% CI {100 * lo:.1f}-{100 * hi:.1f}%, {n} texts)"
        )
        f1 = ", ".join(f"{name} {100 * v['f1']:.1f}" for name, v in m["per_class"].items())
        lines.append(f"per-class F1: {f1}")
        val = results.get("val", {}).get(decision) if split == "test" else None
        if val:
            lines.append(f"validation accuracy: {100 * val['accuracy']:.1f}% ({val['n']} texts)")
    if out.get("search"):  # the run was chosen on the validation texts (search.candidates)
        s = out["search"]
        spent = sum(c["train_wall_s"] or 0 for c in s["candidates"])
        lines.append(
            f"search ({len(s['candidates'])} candidates, {spent:.0f} s of training): {s['reason']}"
        )
    lines += [f"warning: {f}" for f in out.get("checkpoint_fallbacks", [])]
    lines.append(f"report: {out.get('report') or f'{workdir}/report.md'}")  # the one written
    if phases:
        lines.append(f"time: {phases}")
    predict = f"  echo 'A wonderful film.' | python run.py --mode=predict --workdir={w}"
    if members:
        explained = shlex.quote(str(members[0]))
        return "\n".join(
            [
                *lines,
                "next:",
                predict,
                f"  explain a member: python run.py "
                f"--mode=explain --workdir={explained} --text='A thin plot.'",
            ]
        )
    lines += [
        "next:",
        f"  python run.py --mode=eval --workdir={w}",
        predict,
        f"  python run.py --mode=explain --workdir={w} --text='A thin plot, wooden acting.'",
        "  on a GPU, the full recipes: --config=configs/decision.py (decision-trained, from an "
        "LM) or configs/full_10e.py (the LM objective)",
    ]
    return "\n".join(lines)
