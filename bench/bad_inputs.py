"""What a user sees for each bad input: the table in BUILD_NOTES ("Bad input"), measured.

Trains one tiny run (configs/tiny.py on a few local IMDB reviews, ~20 s on a CPU), then runs
`run.py` once per case (a bad config, bad data, a refused workdir, bad predict/explain input)
and prints one markdown row per case: the input, the last line on stderr, the exit status, and
whether a Python traceback was printed (it never should be).

    python bench/bad_inputs.py [--shared ../shared/data] [--only REGEX]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--only", default="", help="run only the cases whose name matches")
    return p.parse_args(argv)


def run(args: list[str], cwd: Path, stdin: str | None = None) -> tuple[int, str, bool]:
    p = subprocess.run(
        [sys.executable, str(REPO / "run.py"), *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    out = [ln for ln in p.stdout.strip().splitlines() if ln.strip()]
    shown = lines[-1] if lines else "(nothing)"
    if p.returncode == 0:  # a run that went on: its warning, else the first line of its output
        warned = [ln for ln in out + lines if re.match(r"warning:|W\d{4} ", ln, re.I)]
        shown = warned[0] if warned else f"(stdout) {out[0]}" if out else shown
    return p.returncode, shown, "Traceback" in p.stderr


def main(argv=None) -> None:
    a = parse_args(argv)
    shared = Path(a.shared).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="gencls_bad_inputs_"))
    reviews = []
    with gzip.open(shared / "imdb" / "train.jsonl.gz", "rt") as f:
        for line in f:
            reviews.append(json.loads(line))
    pos = [r for r in reviews if r["label"] == 1][:20]
    neg = [r for r in reviews if r["label"] == 0][:20]

    def jsonl(name: str, rows: list[dict]) -> Path:
        path = tmp / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    train = jsonl("train.jsonl", neg[:16] + pos[:16])
    test = jsonl("test.jsonl", neg[16:] + pos[16:])
    tiny = [
        f"--config={REPO / 'configs' / 'tiny.py'}",
        f"--config.data.tokenizer={shared / 'gpt2-tokenizer'}",
        f"--config.compile_cache_dir={tmp / 'xla'}",
        f"--config.data.cache_dir={tmp / 'cache'}",
        "--config.progress_bars=False",
        "--config.data.val_size=8",
        "--config.eval.test_per_class=0",
        "--config.eval.sample_per_class=0",
        "--config.eval.train_sample_per_class=0",
        "--config.train.ckpt_every=1",
    ]

    def data(tr: Path = train, te: Path = test) -> list[str]:
        return [f"--config.data.train_path={tr}", f"--config.data.test_path={te}"]

    run_dir = tmp / "run"
    code, last, _ = run([*tiny, *data(), f"--workdir={run_dir}"], tmp)
    if code != 0:
        sys.exit(f"the tiny run failed: {last}")
    w = f"--workdir={run_dir}"
    bad = tmp / "bad.py"
    bad.write_text("def get_config(:\n")
    texts = tmp / "texts.jsonl"
    texts.write_text('{"text": "A wonderful film."}\n{"text": "Dull."}\n')
    empty = tmp / "empty.jsonl"
    empty.write_text("")
    badjson = tmp / "badjson.jsonl"
    badjson.write_text('{"text": "fine", "label": 0}\n{"text": "broken\n')
    notobj = tmp / "notobj.jsonl"
    notobj.write_text('{"text": "fine", "label": 0}\n[1, 2]\n')
    nofield = tmp / "nofield.jsonl"
    nofield.write_text('{"text": "fine", "label": 0}\n{"review": "no text", "label": 1}\n')
    badutf = tmp / "badutf.jsonl"
    badutf.write_bytes(b'{"text": "fine", "label": 0}\n{"text": "\xff\xfe", "label": 1}\n')
    one_class = jsonl("one_class.jsonl", neg[:16])
    unseen = jsonl("unseen.jsonl", [{"text": "ok", "label": "meh"}])
    as_csv = tmp / "train.csv"
    with as_csv.open("w", newline="") as f:
        w_csv = csv.writer(f)
        w_csv.writerow(["text", "label"])
        w_csv.writerows([r["text"], r["label"]] for r in neg + pos)

    def changed_data_run() -> list[str]:
        d = tmp / "changed"
        shutil.copytree(run_dir, d / "run")
        t2 = jsonl("changed/train.jsonl", neg[:16] + pos[:16])
        run([*tiny, *data(t2), f"--workdir={d / 'run2'}", "--config.train.max_steps=1"], tmp)
        t2.write_text(t2.read_text().replace("a", "A", 1))
        return [*tiny, *data(t2), f"--workdir={d / 'run2'}", "--config.train.max_steps=1"]

    def locked() -> list[str]:
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, time; from gencls_jax.runs.lock import WorkdirLock; "
                f"WorkdirLock({str(run_dir)!r}, 'train').acquire(); print('held', flush=True); "
                "time.sleep(60)",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        holder.stdout.readline()
        locked.holder = holder
        return [*tiny, *data(), w]

    def damaged(all_steps: bool) -> list[str]:
        d = tmp / ("all_damaged" if all_steps else "damaged")
        shutil.copytree(run_dir, d)
        steps = sorted(
            (p for p in (d / "checkpoints").iterdir() if p.name.isdigit()),
            key=lambda p: int(p.name),
        )
        for step in steps if all_steps else steps[-1:]:
            for f in step.rglob("*"):
                if f.is_file() and f.stat().st_size > 1024:
                    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
        mode = [*tiny, *data()] if all_steps else ["--mode=eval"]
        return [*mode, f"--workdir={d}"]

    long_text = jsonl(
        "long.jsonl", [{"text": " ".join(["word"] * 400), "label": 0}] + neg[:16] + pos[:16]
    )
    cases = [
        ("--config=configs/nope.py", lambda: ["--config=configs/nope.py", "--workdir=x"]),
        ("a config file with a syntax error", lambda: [f"--config={bad}", "--workdir=x"]),
        ("--config.train.epochz=3 (a mistyped key)", lambda: [*tiny, "--config.train.epochz=3"]),
        ("--config.train.lr=abc", lambda: [*tiny, "--config.train.lr=abc", "--workdir=x"]),
        ("--mode=bogus", lambda: ["--mode=bogus", w]),
        ("train without --workdir", lambda: tiny),
        ("--mode=eval on a folder with no run", lambda: ["--mode=eval", f"--workdir={tmp}"]),
        ("--mode=report without --workdirs", lambda: ["--mode=report"]),
        ("--mode=report --workdirs=missing", lambda: ["--mode=report", "--workdirs=missing"]),
        ("--help", lambda: ["--help"]),
        ("--help_config", lambda: ["--help_config"]),
        ("train file missing", lambda: [*tiny, *data(tmp / "missing.jsonl"), "--workdir=x"]),
        ("empty train file", lambda: [*tiny, *data(empty), "--workdir=x"]),
        ("invalid JSON line", lambda: [*tiny, *data(badjson), "--workdir=x"]),
        ("a JSON line that is not an object", lambda: [*tiny, *data(notobj), "--workdir=x"]),
        ("no text field", lambda: [*tiny, *data(nofield), "--workdir=x"]),
        ("invalid UTF-8", lambda: [*tiny, *data(badutf), "--workdir=x"]),
        (
            "one-class training set (label names from the data)",
            lambda: [*tiny, *data(one_class), "--config.data.label_names=()", "--workdir=x"],
        ),
        (
            "one-class training set (label names in the config)",
            lambda: [*tiny, *data(one_class), "--workdir=x"],
        ),
        ("a test label the run never saw", lambda: [*tiny, *data(te=unseen), "--workdir=x"]),
        (
            "a .csv train file with data.source=jsonl (read as csv)",
            lambda: [
                *tiny,
                *data(as_csv),
                f"--workdir={tmp / 'csv'}",
                "--config.train.max_steps=1",
            ],
        ),
        (
            "--config.model.init=<missing folder>",
            lambda: [*tiny, *data(), "--config.model.init=runs/nope/export", "--workdir=x"],
        ),
        (
            "a text longer than data.max_len with long_text=error",
            lambda: [*tiny, *data(long_text), "--config.data.long_text=error", "--workdir=x"],
        ),
        (
            "data.compact_vocab with a pretrained init",
            lambda: [
                *tiny,
                *data(),
                "--config.data.compact_vocab=64",
                f"--config.model.init={tmp}",
                "--workdir=x",
            ],
        ),
        ("train again with another lr", lambda: [*tiny, *data(), w, "--config.train.lr=0.01"]),
        *(
            (
                f"search.candidates={c}",
                lambda c=c: [*tiny, *data(), f"--config.search.candidates={c}", "--workdir=x"],
            )
            for c in (
                "('train.lrr=1',)",
                "('train.lr=abc',)",
                "('data.split_seed=1',)",
                "('seed=1',)",
            )
        ),
        (
            "search.candidates on a workdir holding a plain run",
            lambda: [*tiny, *data(), w, "--config.search.candidates=('train.lr=0.01',)"],
        ),
        ("train again, the train file changed under its name", changed_data_run),
        ("a second train while one runs in the workdir", locked),
        ("eval with another run's data", lambda: ["--mode=eval", w, *data(one_class)]),
        ("eval, the newest checkpoint damaged", lambda: damaged(False)),
        ("train, every checkpoint damaged", lambda: damaged(True)),
        ("predict, empty input file", lambda: ["--mode=predict", w, f"--input={empty}"]),
        ("predict, an invalid JSON line", lambda: ["--mode=predict", w, f"--input={badjson}"]),
        ("predict --input=missing.jsonl", lambda: ["--mode=predict", w, "--input=missing.jsonl"]),
        (
            "predict --output=<a folder>",
            lambda: ["--mode=predict", w, f"--input={texts}", f"--output={tmp}"],
        ),
        (
            "predict on a folder with no run",
            lambda: ["--mode=predict", f"--workdir={tmp / 'none'}", f"--input={texts}"],
        ),
        ("predict --text=... (explain's flag)", lambda: ["--mode=predict", w, "--text=hi"]),
        ("explain --against=UNKNOWN", lambda: ["--mode=explain", w, "--text=hi", "--against=x"]),
        (
            "explain with --text and --input",
            lambda: ["--mode=explain", w, "--text=hi", f"--input={texts}"],
        ),
        (
            "explain --output=-",
            lambda: ["--mode=explain", w, "--text=A wonderful film.", "--output=-"],
        ),
    ]
    print("| input | what the user sees (last line on stderr) | exit | traceback |")
    print("| --- | --- | --- | --- |")
    for name, make in cases:
        if a.only and not re.search(a.only, name):
            continue
        args = make()
        t0 = time.time()
        code, last, tb = run(args, tmp)
        if getattr(locked, "holder", None) is not None:
            locked.holder.send_signal(signal.SIGKILL)
            locked.holder.wait()
            locked.holder = None
        last = last.replace(str(tmp) + os.sep, "").replace(str(tmp), "TMP").replace("|", "\\|")
        last = re.sub(r"^[IWE]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] ", "", last)  # absl's prefix
        print(
            f"| {name} | `{last[:300]}` | {code} | {'yes' if tb else 'no'} |"
            f" <!-- {time.time() - t0:.0f} s -->"
        )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
