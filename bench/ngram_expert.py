"""What the n-gram expert would give a finished run, on the CPU, from its outputs alone.

    python bench/ngram_expert.py --workdir=runs/trec
    python bench/ngram_expert.py --workdir=runs/sst2 --grid=0,0.1,0.25,0.5,1,2 --out=x.json

A run's eval writes predictions_val.jsonl and predictions_test.jsonl: per text its id, label,
per-class log-likelihoods log p(x | c) and scored tokens (the GPT-2 expert). This script reads
them, reads the run's own train / val / test texts as eval does (its config.json and data:
`conditioning.load_data`), counts the n-gram expert on the training texts
(`gencls_jax.scoring.ngram`, the settings of --order, --alpha, --buckets, default the run's
eval.ngram_*), and prints for every weight w of --grid (0 always tried) the val and test
accuracy of the run's decision rule on log p(x | c) + w * log p_ngram(x | c) and the val
cross-entropy at a temperature fitted per w, the w chosen on val by --select (default the run's
eval.ngram_select; ties to the smallest, as eval chooses), GPT-2 alone (w = 0), the n-gram
expert alone (log p_ngram(x | c) + log p(c)) and McNemar's test of the chosen combination
against GPT-2 alone on test (and against the n-gram expert alone). No model is loaded: GPU
runs' outputs are enough. A run whose eval already used the expert is read the same way (the
log-likelihoods it writes are the GPT-2 expert's).

`--expert` swaps the n-gram LM for one of `bench/baselines.py`'s bag-of-words classifiers
(nblr, nbsvm, tfidf_lr, mnb; scikit-learn, the bench extra), fitted on the same training texts
with `--hyper` (C, or mnb's alpha; no search): its decision scores (one-vs-rest per class; K = 2:
[0, s]) are the term w multiplies. An exploration of issue 24's lever 2 (a discriminative
expert), not a feature: eval has the n-gram LM only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]  # gencls_jax; run_outputs, baselines

from run_outputs import predictions_file, records  # noqa: E402

from gencls_jax import conditioning  # noqa: E402
from gencls_jax.reports import stats  # noqa: E402
from gencls_jax.runs import rules  # noqa: E402
from gencls_jax.runs import workdir as wd  # noqa: E402
from gencls_jax.scoring import decide, ngram  # noqa: E402

BOW = ("nblr", "nbsvm", "tfidf_lr", "mnb")  # --expert: bench/baselines.py's methods


def read_split(workdir: Path, split: str) -> dict:
    """A split's eval output: ids, labels, [N, K] log-likelihoods, scored tokens."""
    rows = records(predictions_file(workdir, split))
    return dict(
        ids=[r["id"] for r in rows],
        labels=np.array([r["label"] for r in rows]),
        ll=np.array([r["log_likelihoods"] for r in rows], np.float64),
        n_tok=np.array([r["n_tokens"] for r in rows], np.float64),
    )


def texts_by_id(ds, ids: list[str], labels, split: str) -> list[str]:
    """The texts of (`ids`, `labels`) in the run's split as eval read it (cleaned): by id and
    label, since a file's ids may repeat across classes (IMDB's do: one folder per label)."""
    index = {(i, int(y)): t for i, y, t in zip(ds.ids, ds.labels, ds.texts)}
    ids = list(zip(ids, (int(y) for y in labels)))
    missing = [i for i in ids if i not in index]
    if missing:
        raise SystemExit(
            f"error: {split}: {len(missing)} predicted ids not in the data ({missing[0]})"
        )
    return [index[i] for i in ids]


def bow_terms(method: str, hyper: float, train, texts: dict, k: int) -> dict:
    """{split: [N, K] decision scores} of `bench/baselines.py`'s `method` fitted on the training
    texts with `hyper` (its features: word 1-2 grams, min_df 2, scikit-learn's token pattern,
    as the baselines' defaults); a binary scorer's s becomes [0, s]."""
    import baselines

    feats = baselines.Features(
        argparse.Namespace(min_df=2, token_pattern=r"(?u)\b\w\w+\b"), list(train.texts)
    )
    fit, _, view = baselines.FITTERS[method]
    fitted = fit(feats.get(view, "train"), np.asarray(train.labels), k, hyper, 0, 5000)
    out = {}
    for split, t in texts.items():
        feats.add(split, t)
        s = np.asarray(feats.get(view, split) @ fitted.W) + fitted.b
        out[split] = np.concatenate([np.zeros((len(t), 1)), s], 1) if s.shape[1] == 1 else s
    return out


def accuracies(rule: str, prior, val: dict, test: dict, nb: dict, w: float) -> tuple:
    """(val accuracy, test accuracy, [N] test correct, val cross-entropy at its fitted
    temperature) of `rule` on ll + w * nb; the calibrated rule's offsets are fitted on val, as
    eval fits them."""
    lv, lt = val["ll"] + w * nb["val"], test["ll"] + w * nb["test"]
    off = decide.fit_offsets(lv, val["labels"]) if rule == "calibrated" else None
    sv = decide.scores(lv, val["n_tok"], rule, prior, off)
    pt = decide.scores(lt, test["n_tok"], rule, prior, off).argmax(1)
    ok = pt == test["labels"]
    xent, _ = ngram.cross_entropy(sv, val["labels"])
    return float(np.mean(sv.argmax(1) == val["labels"])), float(np.mean(ok)), ok, xent


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True, help="a run evaluated with val and test")
    p.add_argument("--grid", default="0,0.1,0.25,0.5,1,2", help="weights w tried on val")
    p.add_argument("--order", type=int, default=None, help="default: the run's eval.ngram_order")
    p.add_argument("--alpha", type=float, default=None, help="default: eval.ngram_alpha")
    p.add_argument("--buckets", type=int, default=None, help="default: eval.ngram_buckets")
    p.add_argument("--select", default=None, help="accuracy | cross_entropy (the run's default)")
    p.add_argument("--expert", default="ngram", help=f"ngram (eval's) or one of {', '.join(BOW)}")
    p.add_argument("--hyper", type=float, default=1.0, help="--expert's C (mnb: alpha)")
    p.add_argument("--out", default="", help="also write the figures here (JSON)")
    a = p.parse_args(argv)
    workdir = Path(a.workdir)
    config = rules.saved_config(workdir)
    if config is None:
        raise SystemExit(f"error: {workdir} has no config.json: not a gencls_jax run")
    e = config.eval
    order = a.order or int(e.ngram_order)
    alpha = a.alpha or float(e.ngram_alpha)
    buckets = a.buckets or int(e.ngram_buckets)
    grid = sorted({0.0, *(float(x) for x in a.grid.split(","))})
    info = wd.read_run_info(workdir)
    metrics = json.loads((workdir / "metrics.json").read_text())
    prior = np.array(metrics["prior"])
    rule, _ = decide.resolve_rule(e.decision, True, True)
    split = {s: read_split(workdir, s) for s in ("val", "test")}
    _, ds = conditioning.load_data(config, splits=("train", "val", "test"), info=info)
    train = ds["train"]
    texts = {s: texts_by_id(ds[s], v["ids"], v["labels"], s) for s, v in split.items()}
    if a.expert in BOW:
        nb = bow_terms(a.expert, a.hyper, train, texts, len(prior))
    elif a.expert == "ngram":
        counts = ngram.fit(ngram.sequences(train.texts), train.labels, len(prior), order, buckets)
        seqs = {s: ngram.sequences(t) for s, t in texts.items()}
        nb = {s: ngram.log_probs(counts, q, alpha, order) for s, q in seqs.items()}
    else:
        raise SystemExit(f"error: --expert must be ngram or one of {BOW}, got {a.expert!r}")
    table = {w: accuracies(rule, prior, split["val"], split["test"], nb, w) for w in grid}
    select = a.select or e.ngram_select
    if select not in ngram.SELECT:
        raise SystemExit(f"error: --select must be one of {ngram.SELECT}, got {select!r}")
    chosen = ngram.select_weight(
        select, {w: r[0] for w, r in table.items()}, {w: r[3] for w, r in table.items()}
    )
    generative = a.expert in ("ngram", "mnb")  # log p(x | c): Bayes' rule adds the prior
    alone_ok = {
        s: (nb[s] + (prior if generative else 0)).argmax(1) == v["labels"] for s, v in split.items()
    }
    alone = {s: float(np.mean(ok)) for s, ok in alone_ok.items()}
    test_mcnemar = stats.mcnemar(table[chosen][2], table[0.0][2])
    vs_ngram = stats.mcnemar(table[chosen][2], alone_ok["test"])
    out = dict(
        workdir=str(workdir),
        expert=a.expert,
        hyper=a.hyper if a.expert in BOW else None,
        rule=rule,
        order=order,
        alpha=alpha,
        buckets=buckets,
        n=dict(train=len(train), val=len(split["val"]["ids"]), test=len(split["test"]["ids"])),
        select=select,
        grid={
            f"{w:g}": dict(val=r[0], test=r[1], val_cross_entropy=r[3]) for w, r in table.items()
        },
        gpt2_alone=dict(val=table[0.0][0], test=table[0.0][1]),
        ngram_alone=alone,
        chosen_weight=chosen,
        combined=dict(val=table[chosen][0], test=table[chosen][1]),
        mcnemar_test_vs_gpt2=test_mcnemar,
        mcnemar_test_vs_ngram=vs_ngram,
    )
    what = (
        f"{a.expert} of bench/baselines.py, {a.hyper:g}"
        if a.expert in BOW
        else f"word 1-{order} grams, alpha {alpha:g}, {buckets} buckets"
    )
    print(f"{workdir} ({rule} rule; expert: {what})")
    print("| w | val acc | val cross-entropy | test acc |\n| --- | --- | --- | --- |")
    for w, r in table.items():
        tag = f" (chosen by val {select})" if w == chosen else ""
        print(f"| {w:g}{tag} | {100 * r[0]:.2f} | {r[3]:.4f} | {100 * r[1]:.2f} |")
    print(f"GPT-2 alone: val {100 * table[0.0][0]:.2f}, test {100 * table[0.0][1]:.2f}")
    print(f"{a.expert} alone: val {100 * alone['val']:.2f}, test {100 * alone['test']:.2f}")
    print(
        f"combined at w={chosen:g}: val {100 * table[chosen][0]:.2f}, test "
        f"{100 * table[chosen][1]:.2f}; McNemar vs GPT-2 alone on test: "
        f"{test_mcnemar['a_only']} / {test_mcnemar['b_only']} discordant, p = "
        f"{test_mcnemar['p_value']:.3g}; vs the expert alone: {vs_ngram['a_only']} / "
        f"{vs_ngram['b_only']}, p = {vs_ngram['p_value']:.3g}"
    )
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
