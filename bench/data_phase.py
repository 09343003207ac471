"""The data phase of a config (`conditioning.load_data`, what `train` times as 'data'), cold and
warm tokenization cache, with a table of where its time goes.

    python bench/data_phase.py                                   # configs/pretrain_unsup.py
    python bench/data_phase.py --config configs/decision.py --data ../shared/data
    python bench/data_phase.py --set data.tokenize_workers=1     # any config key

Each run is a fresh process (imports and the tokenizer load count, as in a real run): 'cold'
with an empty `data.cache_dir`, then 'warm' with the cache the cold run wrote. Every phase is
its own seconds (exclusive: a phase's time inside another is not counted twice); 'other' is
the rest of load_data (with a pool, the workers' start is in the tokenize phase); calls in
another thread (files read ahead) are shown apart, '(thread)'. The rows of the training stream
(built at the start of the train phase, not in the data phase) are timed after it. The token
arrays of every run are compared. For the pool against one process:
    python bench/data_phase.py; python bench/data_phase.py --set data.tokenize_workers=1
Before/after a change, the trees interleaved, medians of 3 (old: `git archive REV | tar -x -C old`):
    python bench/data_phase.py --old old --reps 3
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# (module, attribute, phase): the functions timed; a module importing a function by name is
# patched too.
TIMED = [
    (
        "gencls_jax.data.tokenize",
        "load_tokenizer",
        "load tokenizer (transformers, plain GPT-2 files, or the kept one)",
    ),
    (
        "gencls_jax.conditioning",
        "load_tokenizer",
        "load tokenizer (transformers, plain GPT-2 files, or the kept one)",
    ),
    ("gencls_jax.data.sources", "_read_bytes", "read + gunzip files"),
    ("gencls_jax.data.sources", "file_source", "sha256 of files (provenance)"),
    ("gencls_jax.data.sources", "read_jsonl", "parse jsonl (JSON, fields)"),
    ("gencls_jax.data.sources", "to_dataset", "labels -> Dataset"),
    ("gencls_jax.data.pipeline", "clean_texts", "clean (data/clean.py)"),
    ("gencls_jax.data.tokenize", "cache_key", "cache key (sha256 of texts)"),
    ("gencls_jax.data.pipeline", "tokenize_texts", "tokenize / cache read+write"),
    ("gencls_jax.data.sources:Dataset", "subset", "subset / split"),
    ("gencls_jax.conditioning", "concat", "concat splits"),
]


class Profile:
    """Exclusive seconds per phase: a timed call's time less that of the timed calls inside. A
    call in another thread (the files read ahead, pipeline._read_ahead) counts apart, marked
    '(thread)': it overlaps the main thread's, so it is not part of the sum."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.local = threading.local()  # .stack: children's time of each open call

    def wrap(self, fn, phase: str):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            stack = self.local.__dict__.setdefault("stack", [])
            stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                took = time.perf_counter() - t0
                inner = stack.pop()
                name = phase
                if threading.current_thread() is not threading.main_thread():
                    name = f"{phase} (thread)"
                self.seconds[name] = self.seconds.get(name, 0.0) + took - inner
                if stack:
                    stack[-1] += took

        return timed


def _patch(profile: Profile) -> None:
    for where, attr, phase in TIMED:
        mod, _, cls = where.partition(":")  # module[:class]
        owner = importlib.import_module(mod)
        owner = getattr(owner, cls) if cls else owner
        setattr(owner, attr, profile.wrap(getattr(owner, attr), phase))


def config_of(args) -> object:
    spec = importlib.util.spec_from_file_location("bench_config", Path(args.repo) / args.config)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config()
    d = Path(args.data)
    c.data.source = "jsonl"
    c.data.train_path = str(d / "imdb/train.jsonl.gz")
    c.data.test_path = str(d / "imdb/test.jsonl.gz")
    c.data.unsup_path = str(d / "imdb/unsup.jsonl.gz")
    c.data.tokenizer = str(d / "gpt2-tokenizer")
    c.data.cache_dir = args.cache_dir
    c.progress_bars = False
    for item in args.set:
        key, _, value = item.partition("=")
        *path, last = key.split(".")
        node = c
        for p in path:
            node = getattr(node, p)
        old = getattr(node, last)
        setattr(node, last, type(old)(json.loads(value)) if not isinstance(old, str) else value)
    return c


def child(args) -> None:
    """One data phase in this process: prints a JSON line of its phases."""
    sys.path.insert(0, args.repo)  # this tree's gencls_jax, or the --old one's
    t_start = time.perf_counter()
    from gencls_jax import conditioning

    imports = time.perf_counter() - t_start
    profile = Profile()
    _patch(profile)
    config = config_of(args)
    splits = ("train", "val", "test") if config.eval.splits else ("train", "val")
    t0, c0 = time.perf_counter(), time.process_time()
    tok, ds = conditioning.load_data(config, splits=splits)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    cond = conditioning.get(config.model.conditioning)
    t1 = time.perf_counter()
    if config.train.objective == "decision":
        cond.decision_stream(config, ds["train"], tok)
    else:
        cond.train_stream(config, ds["train"], tok)
    rows = time.perf_counter() - t1
    digest = hashlib.sha256()
    for name in sorted(ds):
        digest.update(ds[name].tokens.flat.tobytes() + ds[name].tokens.offsets.tobytes())
    phases = dict(profile.seconds)
    rate = one_core_rate(tok, ds["train"].texts[:2000])
    tokenizing = phases.get("tokenize / cache read+write", 0.0)
    tokens = sum(int(v.tokens.offsets[-1]) for v in ds.values())
    cores = config.data.tokenize_workers or len(os.sched_getaffinity(0))
    phases["other"] = total - sum(v for k, v in phases.items() if not k.endswith("(thread)"))
    out = {
        "imports": imports,
        "phases": phases,
        "data_phase": total,
        "cpu": cpu,
        "rows": rows,
        "rate": rate / 1e6,
        # the tokenizing's speed over that of `cores` ideal processes (0 for a warm cache)
        "efficiency": tokens / rate / cores / tokenizing if tokenizing > 1 else 0.0,
        "texts": {k: len(v) for k, v in ds.items()},
        "tokens": {k: int(v.tokens.offsets[-1]) for k, v in ds.items()},
        "digest": digest.hexdigest()[:16],
    }
    print("RESULT " + json.dumps(out))


def one_core_rate(tok, texts: list[str]) -> float:
    """Tokens per second of this tree's encoder in one thread: what each pool worker does."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # read at each call
    t0 = time.perf_counter()
    tokens = sum(map(len, tok.encode_batch(texts)))
    return tokens / (time.perf_counter() - t0)


def run_child(args, cache_dir: str, repo: str) -> dict:
    cmd = [sys.executable, __file__, "--child", "--config", args.config, "--data", args.data]
    cmd += ["--cache-dir", cache_dir, "--repo", repo] + [x for s in args.set for x in ("--set", s)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=repo)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"error: the data phase failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def median_run(runs: list[dict]) -> dict:
    """The per-figure median of repeated runs (each phase and total on its own)."""
    keys = ("data_phase", "cpu", "imports", "rows")
    phases = dict.fromkeys(p for r in runs for p in r["phases"])
    return {
        **runs[0],
        **{k: statistics.median(r[k] for r in runs) for k in keys},
        "phases": {p: statistics.median(r["phases"].get(p, 0.0) for r in runs) for p in phases},
    }


def table(runs: dict[str, dict]) -> str:
    names = list(runs)
    phases = list(dict.fromkeys(p for r in runs.values() for p in r["phases"]))
    lines = ["| phase (s) | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for p in phases:
        lines.append(
            f"| {p} | " + " | ".join(f"{r['phases'].get(p, 0):.2f}" for r in runs.values()) + " |"
        )
    for key, label in [
        ("data_phase", "**data phase (load_data)**"),
        ("cpu", "CPU seconds of this process in it"),
        ("imports", "import gencls_jax.conditioning (before it)"),
        ("rows", "training rows (train phase, after it)"),
        ("rate", "one core's tokenizer rate (M tokens/s, 2,000 texts)"),
        ("efficiency", "tokenizing speed / (workers x one core's rate)"),
    ]:
        lines.append(f"| {label} | " + " | ".join(f"{r[key]:.2f}" for r in runs.values()) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/pretrain_unsup.py", help="relative to the repo")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE, e.g. data.max_len=512")
    ap.add_argument("--old", default="", help="an older tree, timed beside this one (before/after)")
    ap.add_argument("--reps", type=int, default=1, help="runs of each (tree, cache); medians shown")
    ap.add_argument("--cache-dir", default="", help="(child) data.cache_dir")
    ap.add_argument("--repo", default=str(REPO), help="(child) the tree whose gencls_jax runs")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.data = str(Path(args.data).resolve())
    if args.child:
        return child(args)
    trees = (
        {"before": str(Path(args.old).resolve()), "after": str(REPO)}
        if args.old
        else {"": str(REPO)}
    )
    reps: dict[str, list[dict]] = {}
    for _ in range(args.reps):  # the trees interleaved, each rep with fresh caches
        for name, repo in trees.items():
            with tempfile.TemporaryDirectory(prefix="data_phase_") as cache:
                for kind in ("cold", "warm"):
                    label = f"{name}, {kind}" if name else kind
                    reps.setdefault(label, []).append(run_child(args, cache, repo))
    runs = {label: median_run(rs) for label, rs in reps.items()}
    first = next(iter(runs.values()))
    print(
        f"{args.config} {' '.join(args.set)}; {os.cpu_count()} CPUs (affinity "
        f"{len(os.sched_getaffinity(0))}); texts {first['texts']}, tokens {first['tokens']}; "
        f"median of {args.reps}"
    )
    print(table(runs))
    digests = {r["digest"] for rs in reps.values() for r in rs}
    print(f"token arrays identical in every run: {len(digests) == 1} ({sorted(digests)})")
    if len(digests) != 1:
        sys.exit(1)


if __name__ == "__main__":
    main()
