"""Golden CPU runs: what the program computes, recorded before a refactor and compared after.

    python tests/golden/golden.py record [--only NAME]   # writes tests/golden/<name>.json
    python tests/golden/golden.py compare [--only NAME]  # runs again, compares, exit 1 on a change

Each scenario is a real `run.py` command on the local data (`../shared`), then predict and
explain on the run it made. What is kept is small (no weights): every prediction and
log-likelihood of every scored split, the accuracies and confusion matrices of every rule,
the logged training losses, and per exported tensor its sha256, sum and first values.

Comparison (issue 23, "what must not change"): predictions, counts, accuracies and confusion
matrices identical; log-likelihoods, losses and explain terms within RTOL (1e-5) relative;
exported tensors within TENSOR_RTOL of their recorded sums and first values (a run of many
steps may reorder float sums), their sha256 reported when it changed.
Not part of the test suite: a run takes 30 s to 3 min on 2 CPU cores, and XLA's CPU code
differs between processors, so the recorded values belong to the machine that recorded them.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
HERE = Path(__file__).resolve().parent
RTOL = 1e-5
TENSOR_RTOL = 1e-3
TOPICS = {
    "sport": "match goal team season coach league player score win cup",
    "music": "album song band guitar concert singer tour chart lyrics drum",
    "science": "study cell experiment theory lab physics data research atom gene",
    "food": "recipe flavour cook bake dish sauce spice menu taste oven",
}
PREDICT_TEXTS = [
    "A wonderful film, I loved every minute of it.",
    "Dull, dull, dull. Two hours I will never get back.",
    "The acting was fine but the plot made no sense at all.",
    "match goal team season",
    "recipe flavour cook bake",
    "Meh",
]


def run(args: list[str], cwd: Path) -> None:
    cmd = [sys.executable, str(REPO / "run.py"), *args]
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")


def topic_file(path: Path, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for label, words in TOPICS.items():
            for i in range(per_class):
                text = " ".join(rng.choice(words.split(), size=12))
                f.write(json.dumps({"id": f"{label}-{i}", "label": label, "text": text}) + "\n")
    return path


def common(tmp: Path) -> list[str]:
    return [
        "--config.progress_bars=False",
        f"--config.compile_cache_dir={tmp / 'xla'}",
        f"--config.data.cache_dir={tmp / 'cache'}",
        f"--config.data.tokenizer={SHARED / 'gpt2-tokenizer'}",
        f"--config.data.train_path={SHARED / 'imdb' / 'train.jsonl.gz'}",
        f"--config.data.test_path={SHARED / 'imdb' / 'test.jsonl.gz'}",
    ]


def scenarios(tmp: Path) -> dict[str, list[str]]:
    """name -> run.py arguments (the workdir is added)."""
    tiny = [f"--config={REPO / 'configs' / 'tiny.py'}", *common(tmp)]
    topics = tmp / "topics"
    topics.mkdir(exist_ok=True)
    train, test = topic_file(topics / "train.jsonl", 20, 0), topic_file(topics / "test.jsonl", 6, 1)
    return {
        "tiny_per_class": tiny,
        "tiny_label_prefix_decision": [
            *tiny,
            "--config.model.conditioning=label_prefix",
            "--config.train.objective=decision",
            "--config.train.decision_weight=0.5",
            "--config.data.batching=bucket",
        ],
        "first_run": [f"--config={REPO / 'configs' / 'first_run.py'}", *common(tmp)],
        "four_class": [
            f"--config={REPO / 'configs' / 'tiny.py'}",
            *common(tmp),
            "--config.data.source=jsonl",
            f"--config.data.train_path={train}",
            f"--config.data.test_path={test}",
            "--config.data.label_names=()",
            "--config.data.per_class_limit=0",
            "--config.data.val_size=8",
            "--config.eval.test_per_class=0",
            "--config.eval.sample_per_class=0",
            "--config.eval.train_sample_per_class=0",
            "--config.train.epochs=2",
        ],
    }


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def tensors(folder: Path) -> dict:
    """Per tensor of every exported safetensors file: sha256, float64 sum, first 4 values."""
    from safetensors.numpy import load_file

    out = {}
    for f in sorted(folder.rglob("*.safetensors")):
        for name, x in sorted(load_file(f).items()):
            key = f"{f.parent.relative_to(folder)}/{name}"
            out[key] = dict(
                sha256=hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest(),
                sum=float(np.asarray(x, np.float64).sum()),
                first=[float(v) for v in np.asarray(x, np.float64).ravel()[:4]],
            )
    return out


def capture(workdir: Path, tmp: Path) -> dict:
    """What the run in `workdir` computed, then predict and explain on it."""
    m = json.loads((workdir / "metrics.json").read_text())
    results = {
        split: {
            rule: dict(n=r["n"], accuracy=r["accuracy"], confusion=r["confusion"])
            for rule, r in by_rule.items()
        }
        for split, by_rule in m["results"].items()
    }
    preds = {}
    for f in sorted(workdir.glob("predictions_*.jsonl")):
        rows = read_jsonl(f)
        key = "log_likelihoods" if "log_likelihoods" in rows[0] else "log_posteriors"
        preds[f.stem] = dict(
            ids=[r["id"] for r in rows],
            labels=[r["label"] for r in rows],
            ll=[r[key] for r in rows],
        )
    logged = [
        {
            k: v
            for k, v in r.items()
            if k in ("step", "kind", "train_loss", "val_loss", "val_accuracy")
        }
        for r in read_jsonl(workdir / "metrics.jsonl")
    ]
    summary = json.loads((workdir / "train_summary.json").read_text())
    texts = tmp / f"{workdir.name}_texts.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in PREDICT_TEXTS))
    out = tmp / f"{workdir.name}_pred.jsonl"
    run(["--mode=predict", f"--workdir={workdir}", f"--input={texts}", f"--output={out}"], tmp)
    predicted = [
        dict(prediction=r["prediction"], ll=r.get("log_likelihoods") or r.get("log_posteriors"))
        for r in read_jsonl(out)
    ]
    explained = []
    if "log_likelihoods" in read_jsonl(out)[0]:
        page = tmp / f"{workdir.name}_why.jsonl"
        run(["--mode=explain", f"--workdir={workdir}", f"--input={texts}", f"--output={page}"], tmp)
        explained = [
            dict(
                predicted=e["predicted"],
                compared=e["compared"],
                margin=e["margin"],
                prior_term=e["prior_term"],
                terms=[t["term"] for t in e["tokens"]],
            )
            for e in read_jsonl(page)
        ]
    return dict(
        prior=m["prior"],
        offsets=m.get("offsets"),
        results=results,
        predictions=preds,
        logged=logged,
        steps=summary["steps"],
        best_step=summary["best_step"],
        predict=predicted,
        explain=explained,
        export=tensors(workdir / "export"),
    )


def compare(old, new, path: str = "", problems: list | None = None) -> list[str]:
    """Differences beyond the tolerances, as lines."""
    problems = [] if problems is None else problems
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            if k not in old or k not in new:
                problems.append(f"{path}/{k}: only in {'new' if k in new else 'old'}")
            elif k == "sha256":
                continue  # reported by the caller
            else:
                compare(old[k], new[k], f"{path}/{k}", problems)
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            problems.append(f"{path}: {len(old)} -> {len(new)} items")
        else:
            for i, (a, b) in enumerate(zip(old, new)):
                compare(a, b, f"{path}[{i}]", problems)
    elif isinstance(old, float) or isinstance(new, float):
        exact = any(w in path for w in ("/accuracy",))
        tol = TENSOR_RTOL if path.startswith("/export") else RTOL
        if (
            old is None
            or new is None
            or (old != new if exact else not np.isclose(old, new, rtol=tol, atol=tol * 1e-2))
        ):
            problems.append(f"{path}: {old!r} -> {new!r}")
    elif old != new:
        problems.append(f"{path}: {old!r} -> {new!r}")
    return problems


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=("record", "compare"))
    p.add_argument("--only", default="", help="one scenario")
    a = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="gencls_golden_"))
    failed = False
    for name, args in scenarios(tmp).items():
        if a.only and name != a.only:
            continue
        workdir = tmp / name
        run([*args, f"--workdir={workdir}"], tmp)
        got = capture(workdir, tmp)
        path = HERE / f"{name}.json"
        if a.action == "record":
            path.write_text(json.dumps(got, indent=1) + "\n")
            print(f"{name}: recorded {path.relative_to(REPO)}")
            continue
        old = json.loads(path.read_text())
        problems = compare(old, got)
        moved = [
            k
            for k in old["export"]
            if old["export"][k]["sha256"] != got["export"].get(k, {}).get("sha256")
        ]
        print(
            f"{name}: {'OK' if not problems else f'{len(problems)} differences'}; "
            f"{len(moved)} of {len(old['export'])} exported tensors not bit-identical "
            "(compared within the tolerance)"
        )
        for line in problems[:40]:
            print("   ", line)
        failed |= bool(problems)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
