"""Out of distribution: can a trained run tell its own kind of text from foreign text?

    # the IMDB decision model on the GPU (issue 26: AUROC >= 0.95 on the far sets, above MSP)
    python bench/ood.py --workdir=runs/decision --out=bench/results/ood_imdb.json
    # a TREC model against IMDB reviews (and the rest)
    python bench/ood.py --workdir=runs/trec --out=bench/results/ood_trec.json
    # CPU smoke run on any trained workdir
    python bench/ood.py --workdir=runs/first_run --limit=50

In distribution: a seeded sample of the run's own test texts (--n_in). Foreign sets, built
offline with --seed (--n texts each, >= 1,000 for the reported figures; a set that has fewer
texts gives them all):
  chars     random printable-ASCII strings, lengths (in characters) drawn from the
            in-distribution texts'
  shuffled  the run's test texts (cleaned as the run cleans them) with their words permuted:
            the words of the training domain, without its language
  python    chunks of the running interpreter's standard library (`Lib/*.py`), whole lines,
            sized like the in-distribution texts
  sst2      SST-2 test + dev sentences (near for an IMDB model: movie text)
  trec      TREC questions (test + train)
  imdb      IMDB test reviews (for a model of other texts, e.g. TREC)
A set read from the run's own test file is left out (IMDB for an IMDB run).

Every text is scored in one pass by the run (`GenerativeClassifier.judged`: the numbers predict
writes).
Per foreign set: AUROC of the OOD score (-log p(text) / n_tokens; foreign = positive), AUROC of
MSP (the top posterior at the run's temperature, as an in-distribution score: its negative is
the OOD score), AUROC of the length alone (n_tokens: 0.5 = length says nothing), the share of
the set that predict would call in distribution (at the run's threshold), and the OOD score's
AUROC within length buckets (--buckets quantiles of the in-distribution texts' scored tokens):
the separation must hold at equal lengths. A table on stdout, everything in --out (JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import string
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SETS = ("chars", "shuffled", "python", "sst2", "trec", "imdb")
FILES = {  # the foreign sets read from ../shared/data (--data)
    "sst2": ("sst2/test.jsonl", "sst2/dev.jsonl"),
    "trec": ("trec/test.jsonl", "trec/train.jsonl"),
    "imdb": ("imdb/test.jsonl.gz",),
}
PRINTABLE = np.array(list(string.ascii_letters + string.digits + string.punctuation + " "))


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--workdir", required=True, help="a trained, evaluated run")
    ap.add_argument("--checkpoint", default="best", choices=("best", "latest"))
    ap.add_argument(
        "--data", default=str(REPO.parent / "shared" / "data"), help="sst2/, trec/, imdb/ here"
    )
    ap.add_argument("--sets", default=",".join(SETS), help="foreign sets, comma-separated")
    ap.add_argument("--n", type=int, default=2000, help="texts per foreign set")
    ap.add_argument("--n_in", type=int, default=5000, help="in-distribution test texts")
    ap.add_argument("--limit", type=int, default=0, help="> 0: at most this many texts per set")
    ap.add_argument("--seed", type=int, default=0, help="sampling and building the sets")
    ap.add_argument("--buckets", type=int, default=3, help="length buckets (quantiles)")
    ap.add_argument("--out", default="", help="the JSON (default ood_<workdir name>.json)")
    return ap.parse_args(argv)


def sample(texts: list[str], n: int, rng: np.random.Generator) -> list[str]:
    """n of `texts` without replacement (all of them, in a seeded order, when there are fewer)."""
    idx = rng.permutation(len(texts))[: min(n, len(texts))]
    return [texts[i] for i in idx]


def random_chars(lengths: np.ndarray, n: int, rng: np.random.Generator) -> list[str]:
    """n strings of uniform printable ASCII, lengths drawn from `lengths`; none blank."""
    out = []
    for length in rng.choice(lengths, n):
        chars = PRINTABLE[rng.integers(0, len(PRINTABLE), max(int(length), 1))]
        chars[0] = PRINTABLE[rng.integers(0, len(PRINTABLE) - 1)]  # the last one is the space
        out.append("".join(chars))
    return out


def shuffled_words(texts: list[str], n: int, rng: np.random.Generator) -> list[str]:
    """n texts drawn from `texts` (with replacement when fewer), each with its words permuted."""
    out = []
    for i in rng.integers(0, len(texts), n):
        words = texts[i].split()
        out.append(" ".join(words[j] for j in rng.permutation(len(words))))
    return out


def python_chunks(lengths: np.ndarray, n: int, rng: np.random.Generator) -> list[str]:
    """n chunks of whole lines of the standard library's `Lib/*.py` files, each the first lines
    from a random line on that reach a length drawn from `lengths` (or the file's end)."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    sources = [f.read_text(encoding="utf-8", errors="replace").splitlines(True) for f in files]
    sources = [s for s in sources if s]
    out = []
    while len(out) < n:
        lines = sources[rng.integers(len(sources))]
        start, target, chunk = int(rng.integers(len(lines))), int(rng.choice(lengths)), ""
        for line in lines[start:]:
            chunk += line
            if len(chunk) >= target:
                break
        if chunk.strip():
            out.append(chunk)
    return out


def read_texts(paths) -> list[str]:
    from gencls_jax.data.sources import read_jsonl

    return [t for p in paths for t in read_jsonl(p, "text", "label", "id", labeled=False).texts]


def foreign_sets(args, clf, own: list[str], rng: np.random.Generator) -> dict[str, list[str]]:
    """{set name: texts} of --sets; `own` the run's test texts, cleaned."""
    from gencls_jax.data.pipeline import split_path

    lengths = np.array([len(t) for t in own])
    own_file = Path(split_path(clf.config.data, "test")).resolve()
    n = args.limit if args.limit > 0 else args.n
    out = {}
    for name in args.sets.split(","):
        if name == "chars":
            out[name] = random_chars(lengths, n, rng)
        elif name == "shuffled":
            out[name] = shuffled_words(own, n, rng)
        elif name == "python":
            out[name] = python_chunks(lengths, n, rng)
        elif name in FILES:
            paths = [Path(args.data) / f for f in FILES[name]]
            if own_file in [p.resolve() for p in paths]:
                print(f"{name}: left out, it is the run's own test file", file=sys.stderr)
                continue
            out[name] = sample(read_texts(paths), n, rng)
        else:
            sys.exit(f"error: --sets: unknown set {name!r} (known: {', '.join(SETS)})")
    return out


def part(judged, rows: slice):
    """The texts `rows` of a `decide.Judged` (every per-text array cut, the rest kept)."""
    cut = {
        f.name: getattr(judged, f.name)[rows]
        for f in dataclasses.fields(judged)
        if isinstance(getattr(judged, f.name), np.ndarray)
    }
    return dataclasses.replace(judged, **cut)


def bucket_edges(n_tokens: np.ndarray, buckets: int) -> np.ndarray:
    """The inner edges of `buckets` length buckets: quantiles of the in-distribution texts'
    scored tokens (repeated edges merged: truncated texts all share the longest length)."""
    return np.unique(np.quantile(n_tokens, np.linspace(0, 1, buckets + 1)[1:-1]))


def compare(name: str, inside, outside, edges: np.ndarray, threshold) -> dict:
    """One foreign set against the in-distribution texts (`decide.Judged` each); an AUROC of
    an empty side (a length bucket no text falls in) is None."""
    from gencls_jax.scoring import ood

    def auroc(a, b) -> float | None:
        value = ood.auroc(a, b)
        return None if np.isnan(value) else value

    row = dict(
        set=name,
        n=len(outside.n_tokens),
        median_tokens=float(np.median(outside.n_tokens)),
        auroc_ood=auroc(inside.ood_scores, outside.ood_scores),
        auroc_msp=auroc(-inside.confidence, -outside.confidence),
        auroc_length=auroc(inside.n_tokens, outside.n_tokens),
        kept=None if threshold is None else float(np.mean(outside.in_distribution)),
        by_length=[],
    )
    b_in = np.searchsorted(edges, inside.n_tokens, side="right")
    b_out = np.searchsorted(edges, outside.n_tokens, side="right")
    bounds = [0.0, *edges.tolist(), None]  # [from, below); None: no upper end
    for b in range(len(edges) + 1):
        i, o = b_in == b, b_out == b
        row["by_length"].append(
            dict(
                tokens=[bounds[b], bounds[b + 1]],
                n_in=int(i.sum()),
                n_out=int(o.sum()),
                auroc_ood=auroc(inside.ood_scores[i], outside.ood_scores[o]),
                auroc_msp=auroc(-inside.confidence[i], -outside.confidence[o]),
            )
        )
    return row


def fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def bucket_name(low: float, high: float | None) -> str:
    """'<170' or '>=170' (token counts are whole: n < 169.67 is n < 170)."""
    return f">={math.ceil(low)}" if high is None else f"<{math.ceil(high)}"


def table(rows: list[dict]) -> str:
    lines = [
        f"{'set':9s} {'n':>6s} {'AUROC ood':>9s} {'AUROC MSP':>9s} {'AUROC len':>9s} "
        f"{'kept':>6s}  AUROC ood by length bucket (scored tokens: AUROC (n in/n out))"
    ]
    for r in rows:
        kept = "-" if r["kept"] is None else f"{100 * r['kept']:.1f}%"
        buckets = " | ".join(
            f"{bucket_name(*b['tokens'])}: {fmt(b['auroc_ood'])} ({b['n_in']}/{b['n_out']})"
            for b in r["by_length"]
        )
        lines.append(
            f"{r['set']:9s} {r['n']:6d} {fmt(r['auroc_ood']):>9s} {fmt(r['auroc_msp']):>9s} "
            f"{fmt(r['auroc_length']):>9s} {kept:>6s}  {buckets}"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))
    from gencls_jax.classifier import GenerativeClassifier
    from gencls_jax.data.clean import clean_text
    from gencls_jax.data.pipeline import read_split

    t0 = time.time()
    clf = GenerativeClassifier.load(args.workdir, args.checkpoint)
    if not clf.conditioning.generative:
        sys.exit(f"error: a {clf.conditioning.name} run has no p(text): nothing to measure")
    rule = clf.resolve_rule(clf.config.eval.decision)[0]
    rng = np.random.default_rng(args.seed)
    raw, _ = read_split(clf.config.data, "test")
    own = [clean_text(t, bool(clf.config.data.clean_html)) for t in raw.texts]
    n_in = args.limit if args.limit > 0 else args.n_in
    inside_texts = sample(own, n_in, rng)
    sets = foreign_sets(args, clf, own, rng)
    # one scoring pass over every text (the in-distribution texts first), then cut per set
    texts = inside_texts + [t for ts in sets.values() for t in ts]
    judged = clf.judged(texts, rule)
    ends = np.cumsum([len(inside_texts), *(len(ts) for ts in sets.values())])
    inside = part(judged, slice(0, ends[0]))
    edges = bucket_edges(inside.n_tokens, args.buckets)
    rows = [
        compare(name, inside, part(judged, slice(a, b)), edges, clf.ood_threshold)
        for name, a, b in zip(sets, ends[:-1], ends[1:])
    ]
    print(table(rows))
    out = dict(
        workdir=str(args.workdir),
        checkpoint=args.checkpoint,
        rule=rule,
        temperature=clf.temperatures.get(rule),
        ood_threshold=clf.ood_threshold,
        ood_keep=clf.ood_keep,
        seed=args.seed,
        python=sys.version.split()[0],
        stdlib=sysconfig.get_paths()["stdlib"],
        n_in=len(inside_texts),
        length_edges=edges.tolist(),
        sets=rows,
        wall_s=time.time() - t0,
    )
    path = Path(args.out or f"ood_{Path(args.workdir).resolve().name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, allow_nan=False))
    print(f"-> {path}", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
