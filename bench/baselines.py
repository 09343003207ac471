"""Same-data bag-of-words baselines (word 1-2 grams) for the figures gencls_jax reports.

    D=../shared/data
    python bench/baselines.py --train $D/imdb/train.jsonl.gz --test $D/imdb/test.jsonl.gz \
        --val-size 0.05 --seeds 0 --out /tmp/baselines/imdb_full
    python bench/baselines.py --train $D/imdb/train.jsonl.gz --test $D/imdb/test.jsonl.gz \
        --per-class 500 --seeds 0,1,2 --protocol small --out /tmp/baselines/imdb_500
    python bench/baselines.py --train $D/sst2/train.jsonl --val $D/sst2/dev.jsonl \
        --test $D/sst2/test.jsonl

Methods (--methods, all on one CountVectorizer vocabulary of the training texts):
  tfidf_lr  TF-IDF (sublinear tf, l2 norm) + L2 logistic regression (liblinear; saga,
            multinomial, for K > 2); C tuned
  mnb       multinomial naive Bayes on the counts; alpha tuned
  nbsvm     Wang & Manning (2012): binarized counts scaled by the NB log-count ratio r
            (smoothing 1), an L2-loss linear SVM, weights interpolated
            w' = (1-beta) mean|w| + beta w (beta 0.25); one-vs-rest with a per-class r for
            K > 2; C tuned
  nblr      the same r-scaled features with L2 logistic regression instead of the
            interpolated SVM; C tuned
The regularisation is chosen on the validation texts only (never on test): highest validation
accuracy, ties broken by validation macro-F1, then by the stronger regularisation (smaller C,
larger alpha). The model fitted on the training part with that value is the one tested
(--refit: refit on training + validation texts with it).

Splits (--sampler gencls, the default, uses gencls_jax.data.splits so our runs and these
baselines see the same texts; class indices follow gencls_jax: 0..max for integer labels,
else the sorted names):
  --protocol full   validation = stratified_split(train labels, val_size, seed); the rest is
                    the training part; with --per-class N, per_class_sample(rest, N, seed,
                    "train_limit") of it (gencls_jax's current order: validation rows do not
                    depend on N)
  --protocol small  per_class_sample(train labels, N, seed, "train_limit") first, then
                    stratified_split(sampled labels, val_size, seed): training, validation and
                    the choice of C / alpha all come from the same N per class (the small-data
                    protocol)
--val FILE replaces the hold-out (the training part is then all of train, or its N per class).
--out DIR writes results.json (every figure, the grids, the rows used) and predictions/*.jsonl
(id, label, prediction as class indices + names, as gencls_jax's predictions_test.jsonl) for
McNemar's test against our classifier's paired predictions.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import importlib.util
import json
import os
import platform
import re
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
METHODS = ("tfidf_lr", "mnb", "nbsvm", "nblr")
DEFAULT_GRIDS = {
    "tfidf_lr": "0.1,0.3,1,3,10,30,100,300,1000",
    "mnb": "0.01,0.03,0.1,0.3,1,3",
    "nbsvm": "0.001,0.003,0.01,0.03,0.1,0.3,1,3",
    "nblr": "0.01,0.03,0.1,0.3,1,3,10,30",
}
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)  # the pattern of gencls_jax.data.clean


class BaselineError(ValueError):
    pass


# ----------------------------------------------------------------------------------------- data
@dataclasses.dataclass
class Split:
    path: str
    texts: list[str]
    raw_labels: list[Any]
    ids: list[str]
    sha256: str


def _as_int(v: Any) -> int | None:
    """gencls_jax's reading of a label as a class index: an int, or a string of digits."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()):
        return int(v)
    return None


def read_jsonl(path: str, text_field: str, label_field: str, id_field: str) -> Split:
    """One JSON object per line (gzip if the file is); blank lines skipped; rows numbered from 1,
    a missing id reads as 'file:row' (as gencls_jax.data.sources.read_jsonl)."""
    data = Path(path).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    texts, labels, ids = [], [], []
    for row, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{row}"
        try:
            obj = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BaselineError(f"{where}: {e}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get(text_field), str):
            raise BaselineError(f"{where}: expected an object with a string field {text_field!r}")
        if obj.get(label_field) is None:
            raise BaselineError(f"{where}: no label in field {label_field!r}")
        texts.append(obj[text_field])
        labels.append(obj[label_field])
        ids.append(str(obj.get(id_field, f"{Path(path).name}:{row}")))
    if not texts:
        raise BaselineError(f"{path}: no rows")
    return Split(str(Path(path).resolve()), texts, labels, ids, sha)


def label_names_of(train: Split) -> tuple[tuple[str, ...], str]:
    """(names, kind): 0..max for integer labels ('index'), else the sorted strings ('name')."""
    ints = [_as_int(v) for v in train.raw_labels]
    if all(i is not None for i in ints):
        if min(ints) < 0:
            raise BaselineError(f"{train.path}: negative label {min(ints)}")
        return tuple(str(i) for i in range(max(ints) + 1)), "index"
    return tuple(sorted({str(v) for v in train.raw_labels})), "name"


def resolve(split: Split, names: tuple[str, ...], kind: str) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    out = np.empty(len(split.raw_labels), np.int64)
    for j, v in enumerate(split.raw_labels):
        i = _as_int(v) if kind == "index" else index.get(str(v)) if isinstance(v, str) else None
        if i is None or not 0 <= i < len(names):
            raise BaselineError(f"{split.path} row {j + 1}: label {v!r} is not one of {names}")
        out[j] = i
    return out


# -------------------------------------------------------------------------------------- samplers
def load_gencls_splits() -> tuple[Callable, Callable, str]:
    """gencls_jax.data.splits' stratified_split and per_class_sample, imported (not copied).

    splits.py needs only gencls_jax.data.sources (stdlib + numpy), so the two files are loaded
    by path without running the packages' __init__ (which pull in JAX and the whole model code,
    and may be mid-refactor); if that fails, the ordinary import is tried."""
    try:
        spec = importlib.util.find_spec("gencls_jax")
        root = (
            Path(spec.submodule_search_locations[0])
            if spec and spec.submodule_search_locations
            else REPO / "gencls_jax"
        )
    except (ImportError, ValueError):
        root = REPO / "gencls_jax"
    path = root / "data" / "splits.py"
    try:
        mods = {}
        for name, file in (
            ("gencls_jax.data.sources", root / "data" / "sources.py"),
            ("gencls_jax.data.splits", path),
        ):
            if name in sys.modules:
                mods[name] = sys.modules[name]
                continue
            s = importlib.util.spec_from_file_location(name, file)
            m = importlib.util.module_from_spec(s)
            sys.modules[name] = m
            try:
                s.loader.exec_module(m)
            except BaseException:
                del sys.modules[name]
                raise
            mods[name] = m
        splits = mods["gencls_jax.data.splits"]
        how = "loaded by path"
    except Exception as e:  # noqa: BLE001
        try:
            from gencls_jax.data import splits  # type: ignore[no-redef]
        except Exception as e2:  # noqa: BLE001
            raise BaselineError(
                f"--sampler gencls: cannot import gencls_jax.data.splits ({e}; {e2}); "
                "use --sampler sklearn"
            ) from None
        path, how = Path(splits.__file__), "package import"
    sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    return splits.stratified_split, splits.per_class_sample, f"{path} ({how}, sha256 {sha}...)"


class Sampler:
    def __init__(self, kind: str):
        self.kind = kind
        if kind == "gencls":
            self._split, self._sample, self.origin = load_gencls_splits()
        else:
            self.origin = "sklearn train_test_split(stratify) / numpy default_rng(seed) per class"

    def split(
        self, labels: np.ndarray, val_size: float, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(train rows, val rows) of a stratified hold-out, sorted."""
        if self.kind == "gencls":
            return self._split(labels, val_size, seed)
        from sklearn.model_selection import train_test_split

        rows = np.arange(len(labels))
        size = val_size if val_size < 1 else int(val_size)
        tr, va = train_test_split(rows, test_size=size, stratify=labels, random_state=seed)
        return np.sort(tr), np.sort(va)

    def sample(self, labels: np.ndarray, n: int, seed: int) -> np.ndarray:
        """Sorted rows of N per class (all rows of a smaller class)."""
        if self.kind == "gencls":
            return self._sample(labels, n, seed, "train_limit")
        rng = np.random.default_rng(seed)
        picked = [rng.permutation(np.flatnonzero(labels == c))[:n] for c in np.unique(labels)]
        return np.sort(np.concatenate(picked))


def choose_rows(
    labels: np.ndarray, args, seed: int, sampler: Sampler, have_val_file: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """(training rows, validation rows or None when --val gives them) of the train file."""
    all_rows = np.arange(len(labels))
    n = args.per_class
    if have_val_file:
        return (all_rows[sampler.sample(labels, n, seed)] if n else all_rows), None
    if args.protocol == "small":  # N per class first, validation held out of them
        s = sampler.sample(labels, n, seed)
        tr, va = sampler.split(labels[s], args.val_size, seed)
        return s[tr], s[va]
    tr, va = sampler.split(labels, args.val_size, seed)  # full: validation out of all of train
    if n:
        tr = tr[sampler.sample(labels[tr], n, seed)]
    return tr, va


# ------------------------------------------------------------------------------------- features
class Features:
    """One CountVectorizer vocabulary fitted on the training texts; counts, TF-IDF, binary views."""

    def __init__(self, args, train_texts: list[str]):
        from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer

        self.vec = CountVectorizer(
            ngram_range=(1, 2),
            min_df=args.min_df,
            lowercase=True,
            token_pattern=args.token_pattern,
            dtype=np.float64,
        )
        self.counts = {"train": self.vec.fit_transform(train_texts).tocsr()}
        self.tfidf_tf = TfidfTransformer(sublinear_tf=True, norm="l2").fit(self.counts["train"])
        self._cache: dict = {}

    def add(self, name: str, texts: list[str]) -> None:
        self.counts[name] = self.vec.transform(texts).tocsr()

    @property
    def n_features(self) -> int:
        return self.counts["train"].shape[1]

    def get(self, view: str, name: str) -> sp.csr_matrix:
        key = (view, name)
        if key not in self._cache:
            c = self.counts[name]
            if view == "counts":
                m = c
            elif view == "tfidf":
                m = self.tfidf_tf.transform(c).tocsr()
            elif view == "binary":
                m = c.copy()
                m.data[:] = 1.0
            else:
                raise KeyError(view)
            self._cache[key] = m
        return self._cache[key]


# --------------------------------------------------------------------------------------- methods
def log_count_ratio(xb: sp.csr_matrix, positive: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Wang & Manning's r = log((p/|p|_1) / (q/|q|_1)), p = alpha + sum of the positive rows."""
    p = alpha + np.asarray(xb[positive].sum(axis=0)).ravel()
    q = alpha + np.asarray(xb[~positive].sum(axis=0)).ravel()
    return np.log(p / p.sum()) - np.log(q / q.sum())


@dataclasses.dataclass
class Fitted:
    """A linear decision function on one feature view: scores = X @ W + b, [n, K'] (K' = 1:
    binary)."""

    view: str
    W: np.ndarray  # [F, K'] ; K' = 1 for binary (score > 0 -> class 1)
    b: np.ndarray  # [K']
    n_iter: int
    max_iter: int

    def predict(self, X: sp.csr_matrix) -> np.ndarray:
        s = np.asarray(X @ self.W) + self.b
        return (s[:, 0] > 0).astype(np.int64) if s.shape[1] == 1 else s.argmax(1)

    @property
    def converged(self) -> bool:
        return self.n_iter < self.max_iter


def _fit_task(fit: Callable, X: sp.csr_matrix, y: np.ndarray, *args, **kw) -> Fitted:
    """One grid point in a worker: joblib hands big arrays over as read-only memmaps, which
    liblinear refuses, so the worker fits on its own copy."""
    from sklearn.exceptions import ConvergenceWarning

    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # counted from n_iter_ instead
    if not (X.data.flags.writeable and X.indices.flags.writeable and X.indptr.flags.writeable):
        X = sp.csr_matrix((X.data.copy(), X.indices.copy(), X.indptr.copy()), shape=X.shape)
    return fit(X, np.array(y), *args, **kw)


def _n_iter(model) -> int:
    return int(np.max(np.atleast_1d(model.n_iter_)))


def fit_tfidf_lr(
    X: sp.csr_matrix, y: np.ndarray, K: int, C: float, seed: int, max_iter: int
) -> Fitted:
    from sklearn.linear_model import LogisticRegression

    # saga (multinomial) for K > 2: lbfgs reaches the same optimum but took ~10x longer on TREC
    # (scikit-learn 1.9.1)
    solver = "liblinear" if K == 2 else "saga"
    m = LogisticRegression(C=C, solver=solver, max_iter=max_iter, random_state=seed).fit(X, y)
    return Fitted("tfidf", m.coef_.T.copy(), m.intercept_.copy(), _n_iter(m), max_iter)


def fit_mnb(
    X: sp.csr_matrix, y: np.ndarray, K: int, alpha: float, seed: int, max_iter: int
) -> Fitted:
    from sklearn.naive_bayes import MultinomialNB

    m = MultinomialNB(alpha=alpha).fit(X, y)
    W, b = m.feature_log_prob_.T, m.class_log_prior_
    if K == 2:  # a binary decision score, as the other methods
        W, b = W[:, 1:] - W[:, :1], b[1:] - b[:1]
    return Fitted("counts", np.ascontiguousarray(W), np.asarray(b), 0, 1)


def _nb_binary(Xb: sp.csr_matrix, y: np.ndarray, K: int, fit_one: Callable) -> Fitted:
    """One-vs-rest over classes (one problem, class 1 positive, for K = 2), each with its own r:
    the classifier sees binarized counts scaled by r; its weights act as r * w on unscaled ones."""
    pos_classes = [1] if K == 2 else list(range(K))
    W, b, it = [], [], 0
    for k in pos_classes:
        pos = y == k
        r = log_count_ratio(Xb, pos)
        w, b0, n_it = fit_one(Xb @ sp.diags(r), pos.astype(np.int64))
        W.append(r * w)
        b.append(b0)
        it = max(it, n_it)
    return Fitted("binary", np.stack(W, 1), np.array(b), it, 0)


def fit_nbsvm(
    X: sp.csr_matrix, y: np.ndarray, K: int, C: float, seed: int, max_iter: int, beta: float = 0.25
) -> Fitted:
    from sklearn.svm import LinearSVC

    def one(X, t):
        m = LinearSVC(
            C=C, loss="squared_hinge", dual=True, max_iter=max_iter, random_state=seed
        ).fit(X, t)
        w, b = m.coef_.ravel(), float(m.intercept_[0])
        wbar = np.abs(w).mean()
        # w' = (1 - beta) wbar + beta w (the paper). The bias is left unstated there; here it gets
        # the same mix: beta b + (1 - beta) wbar log(N+/N-), so that the score is (1 - beta) wbar
        # times the NB log-odds (r . x + log prior ratio) plus beta times the SVM score (the prior
        # term is ~0 for balanced sets).
        prior = np.log(t.sum() / (len(t) - t.sum()))
        return (1 - beta) * wbar + beta * w, beta * b + (1 - beta) * wbar * prior, _n_iter(m)

    f = _nb_binary(X, y, K, one)
    f.max_iter = max_iter
    return f


def fit_nblr(X: sp.csr_matrix, y: np.ndarray, K: int, C: float, seed: int, max_iter: int) -> Fitted:
    from sklearn.linear_model import LogisticRegression

    def one(X, t):
        m = LogisticRegression(C=C, solver="liblinear", max_iter=max_iter, random_state=seed).fit(
            X, t
        )
        return m.coef_.ravel(), float(m.intercept_[0]), _n_iter(m)

    f = _nb_binary(X, y, K, one)
    f.max_iter = max_iter
    return f


# method -> (fitter, its hyperparameter, the feature view it reads)
FITTERS = {
    "tfidf_lr": (fit_tfidf_lr, "C", "tfidf"),
    "mnb": (fit_mnb, "alpha", "counts"),
    "nbsvm": (fit_nbsvm, "C", "binary"),
    "nblr": (fit_nblr, "C", "binary"),
}


def scores(y: np.ndarray, pred: np.ndarray, K: int) -> dict:
    from sklearn.metrics import confusion_matrix, f1_score

    labels = list(range(K))
    return {
        "accuracy": float((y == pred).mean()),
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "per_class_f1": [
            float(v) for v in f1_score(y, pred, labels=labels, average=None, zero_division=0)
        ],
        "confusion": confusion_matrix(y, pred, labels=labels).tolist(),
    }


def pick(grid_results: list[dict], hyper: str) -> int:
    """Best validation accuracy, then macro-F1, then the stronger regularisation."""

    def key(i):
        g = grid_results[i]
        strength = -g["value"] if hyper == "C" else g["value"]
        return (g["val_accuracy"], g["val_macro_f1"], strength)

    return max(range(len(grid_results)), key=key)


def run_method(
    method: str,
    F: Features,
    y_tr: np.ndarray,
    y_va: np.ndarray,
    K: int,
    grid: list[float],
    seed: int,
    args,
    refit: Callable[[], tuple[Features, np.ndarray]] | None,
) -> tuple[dict, np.ndarray]:
    from joblib import Parallel, delayed

    fit, hyper, view = FITTERS[method]
    kw = {"beta": args.nbsvm_beta} if method == "nbsvm" else {}
    t0 = time.perf_counter()
    X = F.get(view, "train")
    # Processes, not threads: scikit-learn's liblinear draws from one process-wide RNG (newrand's
    # mt_rand) and concurrent fits in threads made reruns differ; one BLAS thread per fit.
    # (small problems stay in this process: starting workers and copying costs more than it saves)
    jobs = min(args.jobs, len(grid)) if method != "mnb" and X.nnz >= 1_000_000 else 1
    models = (
        [fit(X, y_tr, K, v, seed, args.max_iter, **kw) for v in grid]
        if jobs <= 1
        else Parallel(n_jobs=jobs, backend="loky", inner_max_num_threads=1)(
            delayed(_fit_task)(fit, X, y_tr, K, v, seed, args.max_iter, **kw) for v in grid
        )
    )
    grid_results = []
    for v, m in zip(grid, models):
        s = scores(y_va, m.predict(F.get(m.view, "val")), K)
        grid_results.append(
            {
                "value": v,
                "val_accuracy": s["accuracy"],
                "val_macro_f1": s["macro_f1"],
                "converged": m.converged,
                "n_iter": m.n_iter,
            }
        )
    best = pick(grid_results, hyper)
    model, value = models[best], grid[best]
    val = scores(y_va, model.predict(F.get(model.view, "val")), K)
    if refit is not None:
        F2, y2 = refit()
        model = fit(F2.get(view, "train"), y2, K, value, seed, args.max_iter, **kw)
        pred = model.predict(F2.get(model.view, "test"))
    else:
        pred = model.predict(F.get(model.view, "test"))
    wall = time.perf_counter() - t0
    edge = len(grid) > 1 and best in (0, len(grid) - 1)
    return {
        "hyperparameter": hyper,
        "chosen": value,
        "grid": grid_results,
        "at_grid_edge": edge,
        "chosen_converged": model.converged,
        "val": val,
        "wall_s": wall,
    }, pred


# ----------------------------------------------------------------------------------------- report
def refit_features(
    args, texts: list[str], y: np.ndarray, test_texts: list[str]
) -> Callable[[], tuple[Features, np.ndarray]]:
    """The features of training + validation texts (and test), built once on the first call."""
    cache: dict = {}

    def get() -> tuple[Features, np.ndarray]:
        if not cache:
            F = Features(args, texts)
            F.add("test", test_texts)
            cache["F"] = F
        return cache["F"], y

    return get


def fmt_pct(x: float) -> str:
    return f"{100 * x:.2f}"


def fmt_value(v: float) -> str:
    return f"{v:g}"


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def parse_size(s: str) -> float:
    v = float(s)
    if v < 0 or (v >= 1 and v != int(v)):
        raise argparse.ArgumentTypeError(f"a fraction < 1 or a whole count, got {s}")
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    ap.add_argument("--train", required=True, help="jsonl or jsonl.gz")
    ap.add_argument("--test", required=True, help="jsonl or jsonl.gz")
    ap.add_argument(
        "--val",
        default="",
        help="validation file (else a stratified hold-out of train, --val-size)",
    )
    ap.add_argument(
        "--name", default="", help="data set name in the tables (default: the train file's folder)"
    )
    ap.add_argument("--text-field", default="text")
    ap.add_argument("--label-field", default="label")
    ap.add_argument("--id-field", default="id")
    ap.add_argument(
        "--val-size",
        type=parse_size,
        default=0.05,
        help="validation hold-out: fraction (< 1) or count of the rows it is taken from "
        "(gencls_jax's data.val_size default 0.05)",
    )
    ap.add_argument("--per-class", type=int, default=0, help="N training texts per class (0 = all)")
    ap.add_argument(
        "--seeds",
        default="0",
        help="comma-separated seeds (each: its own hold-out / sample and solver seed)",
    )
    ap.add_argument(
        "--protocol",
        choices=("full", "small"),
        default=None,
        help="small: N per class first, validation out of them; full: validation out of all of "
        "train, N per class from the rest (default: small with --per-class, else full)",
    )
    ap.add_argument(
        "--sampler",
        choices=("gencls", "sklearn"),
        default="gencls",
        help="gencls: gencls_jax.data.splits' own functions (same texts as our runs); "
        "sklearn: train_test_split + numpy",
    )
    ap.add_argument(
        "--clean-html",
        action="store_true",
        help="replace <br /> tags with newlines (as data.clean_html)",
    )
    ap.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}"
    )
    for m in METHODS:
        ap.add_argument(
            f"--grid-{m.replace('_', '-')}",
            default=DEFAULT_GRIDS[m],
            help=f"{FITTERS[m][1]} values for {m} (default {DEFAULT_GRIDS[m]})",
        )
    ap.add_argument(
        "--nbsvm-beta", type=float, default=0.25, help="NBSVM interpolation beta (the paper: 0.25)"
    )
    ap.add_argument(
        "--min-df", type=int, default=2, help="n-grams in fewer training texts are dropped"
    )
    ap.add_argument(
        "--token-pattern",
        default=r"(?u)\b\w\w+\b",
        help="CountVectorizer token_pattern (default: scikit-learn's)",
    )
    ap.add_argument(
        "--max-iter",
        type=int,
        default=5000,
        help="solver iterations (non-converged fits are reported)",
    )
    ap.add_argument(
        "--refit",
        action="store_true",
        help="after choosing on validation, refit on training + validation texts",
    )
    ap.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="processes for the grid's fits (1, or under 1e6 nonzero features: in this process)",
    )
    ap.add_argument("--out", default="", help="folder for results.json, report.md and predictions/")
    args = ap.parse_args(argv)

    import sklearn
    from sklearn.exceptions import ConvergenceWarning

    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # counted from n_iter_ instead
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one BLAS thread, as in the workers: the same numbers whatever --jobs
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if bad := [m for m in methods if m not in FITTERS]:
        ap.error(f"unknown method(s) {bad}; choose from {METHODS}")
    grids = {m: [float(v) for v in getattr(args, f"grid_{m}").split(",")] for m in methods}
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if args.protocol is None:
        args.protocol = "small" if args.per_class else "full"
    if args.protocol == "small" and not args.per_class:
        ap.error("--protocol small needs --per-class N (without it, full and small are the same)")
    if args.per_class < 0:
        ap.error("--per-class must be >= 0")
    name = args.name or Path(args.train).resolve().parent.name
    tag = f"n{args.per_class}" if args.per_class else "full"

    out: list[str] = []

    def emit(line: str = "") -> None:
        print(line, flush=True)
        out.append(line)

    t_start = time.perf_counter()
    command = shlex.join(["python", *(sys.argv if argv is None else ["bench/baselines.py", *argv])])
    size_desc = f"{args.per_class} per class" if args.per_class else "full train"
    emit(f"# Bag-of-words baselines: {name}, {size_desc}")
    emit()
    emit(f"command: `{command}` (cwd {os.getcwd()}, python {sys.executable})")
    emit(
        f"versions: scikit-learn {sklearn.__version__}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, python {platform.python_version()}; {os.cpu_count()} CPUs, "
        f"{args.jobs} process(es) for the grid fits"
    )

    sampler = Sampler(args.sampler)
    train = read_jsonl(args.train, args.text_field, args.label_field, args.id_field)
    test = read_jsonl(args.test, args.text_field, args.label_field, args.id_field)
    val_file = (
        read_jsonl(args.val, args.text_field, args.label_field, args.id_field) if args.val else None
    )
    names, kind = label_names_of(train)
    K = len(names)
    y_all, y_test = resolve(train, names, kind), resolve(test, names, kind)
    y_valfile = resolve(val_file, names, kind) if val_file else None
    if K < 2 or np.bincount(y_all, minlength=K).min() == 0:
        raise BaselineError(
            f"{args.train}: every class needs training texts "
            f"(counts {np.bincount(y_all, minlength=K).tolist()})"
        )
    clean = (lambda t: _BR.sub("\n", t)) if args.clean_html else (lambda t: t)
    texts_all = [clean(t) for t in train.texts]
    texts_test = [clean(t) for t in test.texts]
    texts_valfile = [clean(t) for t in val_file.texts] if val_file else None

    for label, s in (("train", train), ("val", val_file), ("test", test)):
        if s is not None:
            emit(f"{label}: {s.path} ({len(s.texts):,} rows, sha256 {s.sha256[:16]}...)")
    emit(
        f"classes ({kind} labels): "
        + ", ".join(f"{i}={n}" for i, n in enumerate(names))
        + f"; train counts {np.bincount(y_all, minlength=K).tolist()}, "
        f"test counts {np.bincount(y_test, minlength=K).tolist()}"
    )
    if val_file:
        val_desc = f"the file {args.val} (no hold-out)"
        if args.protocol == "small":
            val_desc += (
                "; NOTE: the small-data protocol wants validation out of the N per class, "
                "this file is not"
            )
    else:
        val_desc = f"stratified hold-out of {args.val_size:g}" + (
            " (fraction)" if args.val_size < 1 else " (count)"
        )
    protocol_desc = {
        "full": "full (validation held out of all of train; "
        "N per class, if any, sampled from the rest)",
        "small": "small (N per class sampled from all of train first; "
        "validation held out of those N per class)",
    }[args.protocol]
    emit(f"protocol: {protocol_desc}; validation: {val_desc}")
    emit(f"sampler: {args.sampler} — {sampler.origin}")
    emit(
        "features: word 1-2 grams, CountVectorizer(lowercase, "
        f"token_pattern={args.token_pattern!r}, min_df={args.min_df}) fitted on the training part; "
        "tfidf_lr: sublinear tf + idf, l2 norm; clean_html: "
        + ("on (<br /> -> newline)" if args.clean_html else "off (texts as in the file)")
    )
    emit(
        "selection: "
        + "; ".join(
            f"{m} {FITTERS[m][1]} in {{{', '.join(fmt_value(v) for v in grids[m])}}}"
            for m in methods
        )
        + "; best validation accuracy, ties: validation macro-F1, then stronger regularisation"
        + (f"; nbsvm beta {args.nbsvm_beta:g}" if "nbsvm" in methods else "")
        + (
            "; refit on training + validation with the chosen value"
            if args.refit
            else "; tested as fitted on the training part (no refit)"
        )
    )
    emit()

    runs = []
    rows = []
    for seed in seeds:
        tr, va = choose_rows(y_all, args, seed, sampler, val_file is not None)
        y_tr = y_all[tr]
        if val_file is not None:
            texts_va, y_va, va_desc = texts_valfile, y_valfile, "file"
        else:
            texts_va, y_va, va_desc = [texts_all[i] for i in va], y_all[va], "held out"
        if len(np.unique(y_tr)) < K:
            raise BaselineError(
                f"seed {seed}: the training part lacks a class "
                f"(counts {np.bincount(y_tr, minlength=K).tolist()})"
            )
        t0 = time.perf_counter()
        F = Features(args, [texts_all[i] for i in tr])
        F.add("val", texts_va)
        F.add("test", texts_test)
        t_feat = time.perf_counter() - t0
        few = [
            names[c]
            for c in range(K)
            if args.per_class and np.bincount(y_all, minlength=K)[c] < args.per_class
        ]
        emit(
            f"seed {seed}: train {len(tr):,} {np.bincount(y_tr, minlength=K).tolist()}, "
            f"val ({va_desc}) {len(y_va):,} {np.bincount(y_va, minlength=K).tolist()}, "
            f"test {len(y_test):,}; {F.n_features:,} n-grams; features {t_feat:.1f} s"
            + (f"; classes with fewer than {args.per_class} rows (all used): {few}" if few else "")
            + (
                f"; tested models refit on training + validation ({len(tr) + len(y_va):,})"
                if args.refit
                else ""
            )
        )

        refit = (
            refit_features(
                args,
                [texts_all[i] for i in tr] + list(texts_va),
                np.concatenate([y_tr, y_va]),
                texts_test,
            )
            if args.refit
            else None
        )

        run = {
            "seed": seed,
            "train_rows": tr.tolist(),
            "val_rows": None if va is None else va.tolist(),
            "train_counts": np.bincount(y_tr, minlength=K).tolist(),
            "val_counts": np.bincount(y_va, minlength=K).tolist(),
            "n_features": F.n_features,
            "features_wall_s": t_feat,
            "methods": {},
        }
        for m in methods:
            res, pred = run_method(m, F, y_tr, y_va, K, grids[m], seed, args, refit)
            res["test"] = scores(y_test, pred, K)
            run["methods"][m] = res
            rows.append((seed, m, res))
            if args.out:
                pdir = Path(args.out) / "predictions"
                pdir.mkdir(parents=True, exist_ok=True)
                p = pdir / f"{name}_{tag}_seed{seed}_{m}.jsonl"
                p.write_text(
                    "".join(
                        json.dumps(
                            {
                                "id": test.ids[i],
                                "label": int(y_test[i]),
                                "label_name": names[y_test[i]],
                                "prediction": int(pred[i]),
                                "prediction_name": names[pred[i]],
                            }
                        )
                        + "\n"
                        for i in range(len(y_test))
                    )
                )
                res["predictions"] = str(p)
            notes = []
            if res["at_grid_edge"]:
                notes.append("chosen value at the grid's edge")
            nc = [g["value"] for g in res["grid"] if not g["converged"]]
            if nc:
                notes.append(
                    f"not converged at {res['hyperparameter']}="
                    f"{','.join(fmt_value(v) for v in nc)} (max_iter {args.max_iter})"
                )
            emit(
                f"  {m}: {res['hyperparameter']}={fmt_value(res['chosen'])}, "
                f"val {fmt_pct(res['val']['accuracy'])}, "
                f"test {fmt_pct(res['test']['accuracy'])}, {res['wall_s']:.1f} s"
                + (f" ({'; '.join(notes)})" if notes else "")
            )
        runs.append(run)
    emit()

    n_desc = str(args.per_class) if args.per_class else "full"
    emit("## Results (accuracy and macro-F1 in %, test = " + f"{len(y_test):,} texts)")
    emit()
    emit_rows = [
        [
            name,
            n_desc,
            str(seed),
            m,
            f"{res['hyperparameter']}={fmt_value(res['chosen'])}",
            fmt_pct(res["val"]["accuracy"]),
            fmt_pct(res["test"]["accuracy"]),
            fmt_pct(res["test"]["macro_f1"]),
            f"{res['wall_s']:.1f}",
        ]
        for seed, m, res in rows
    ]
    for line in markdown_table(
        [
            "data set",
            "per class",
            "seed",
            "method",
            "chosen",
            "val acc",
            "test acc",
            "test macro-F1",
            "wall s",
        ],
        emit_rows,
    ):
        emit(line)
    summary = {}
    if len(seeds) > 1:
        emit()
        emit(f"## Over seeds {','.join(map(str, seeds))} (mean, min-max, std with ddof=1)")
        emit()
        srows = []
        for m in methods:
            acc = np.array([r["methods"][m]["test"]["accuracy"] for r in runs])
            f1 = np.array([r["methods"][m]["test"]["macro_f1"] for r in runs])
            vacc = np.array([r["methods"][m]["val"]["accuracy"] for r in runs])
            chosen = [fmt_value(r["methods"][m]["chosen"]) for r in runs]
            summary[m] = {
                "test_accuracy_mean": acc.mean(),
                "test_accuracy_min": acc.min(),
                "test_accuracy_max": acc.max(),
                "test_accuracy_std": acc.std(ddof=1),
                "test_macro_f1_mean": f1.mean(),
                "test_macro_f1_std": f1.std(ddof=1),
                "val_accuracy_mean": vacc.mean(),
                "chosen": [r["methods"][m]["chosen"] for r in runs],
            }
            srows.append(
                [
                    name,
                    n_desc,
                    m,
                    str(len(runs)),
                    fmt_pct(acc.mean()),
                    f"{fmt_pct(acc.min())}-{fmt_pct(acc.max())}",
                    f"{100 * acc.std(ddof=1):.2f}",
                    f"{fmt_pct(f1.mean())} ± {100 * f1.std(ddof=1):.2f}",
                    fmt_pct(vacc.mean()),
                    ", ".join(chosen),
                ]
            )
        for line in markdown_table(
            [
                "data set",
                "per class",
                "method",
                "seeds",
                "test acc mean",
                "min-max",
                "std",
                "test macro-F1 mean ± std",
                "val acc mean",
                "chosen",
            ],
            srows,
        ):
            emit(line)
    emit()
    emit("## Validation accuracy over each grid (%)")
    emit()
    for seed, m, res in rows:
        emit(
            f"- seed {seed} {m}: "
            + ", ".join(
                f"{res['hyperparameter']}={fmt_value(g['value'])}: {fmt_pct(g['val_accuracy'])}"
                + ("" if g["converged"] else "*")
                for g in res["grid"]
            )
        )
    emit()
    total = time.perf_counter() - t_start
    emit(
        f"total wall time {total:.1f} s (wall s per method: its grid fits, validation and test "
        "predictions" + (", refit" if args.refit else "") + "; features are timed per seed above)"
    )

    if args.out:
        od = Path(args.out)
        od.mkdir(parents=True, exist_ok=True)
        result = {
            "command": command,
            "cwd": os.getcwd(),
            "argv": sys.argv if argv is None else argv,
            "versions": {
                "scikit-learn": sklearn.__version__,
                "numpy": np.__version__,
                "scipy": scipy.__version__,
                "python": platform.python_version(),
            },
            "data_set": name,
            "per_class": args.per_class,
            "protocol": args.protocol,
            "sampler": args.sampler,
            "sampler_origin": sampler.origin,
            "val_size": args.val_size,
            "clean_html": args.clean_html,
            "files": {
                k: {"path": s.path, "sha256": s.sha256, "rows": len(s.texts)}
                for k, s in (("train", train), ("val", val_file), ("test", test))
                if s is not None
            },
            "label_names": list(names),
            "label_kind": kind,
            "features": {
                "ngram_range": [1, 2],
                "min_df": args.min_df,
                "token_pattern": args.token_pattern,
                "lowercase": True,
                "tfidf": "sublinear_tf, l2",
            },
            "grids": grids,
            "nbsvm_beta": args.nbsvm_beta,
            "refit": args.refit,
            "max_iter": args.max_iter,
            "row_indices": "0-based positions among the train file's non-blank rows",
            "runs": runs,
            "summary": summary,
            "total_wall_s": total,
        }
        (od / "results.json").write_text(json.dumps(result, indent=1, default=float))
        (od / "report.md").write_text("\n".join(out) + "\n")
        print(
            f"\nwrote {od / 'results.json'}, {od / 'report.md'}, {od / 'predictions'}/", flush=True
        )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BaselineError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
