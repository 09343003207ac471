"""The n-gram expert on the H200 IMDB decision run (call B), from its predictions, on the CPU.

    python ngram_imdb_decision.py RUN 0,0.01,0.02,0.03,0.05,0.1,0.25,0.5,1,2

RUN holds the run's predictions_val.jsonl and predictions_test.jsonl; the IMDB texts come from
../shared/data/imdb (a text is (id, label): IMDB's ids repeat across the two classes). The run's
training texts are its train split less its validation texts, as eval counts them.
"""

import gzip
import json
import sys

import numpy as np

from gencls_jax.data.clean import clean_text
from gencls_jax.scoring import ngram

IMDB = "../shared/data/imdb"


def by_key(path):
    return {(str(r["id"]), r["label"]): r for r in map(json.loads, gzip.open(path))}


def main(run, grid):
    val, test = (
        [json.loads(x) for x in open(f"{run}/predictions_{s}.jsonl")] for s in ("val", "test")
    )
    tr, te = by_key(f"{IMDB}/train.jsonl.gz"), by_key(f"{IMDB}/test.jsonl.gz")
    held = {(r["id"], r["label"]) for r in val}
    train = [r for k, r in tr.items() if k not in held]
    print("train", len(train), "val", len(val), "test", len(test))
    texts = [clean_text(r["text"], True) for r in train]
    labels = [r["label"] for r in train]
    counts = ngram.fit(ngram.sequences(texts), labels, 2, 2, 2**20)
    prior = np.log(np.bincount(labels) / len(labels))
    out = {}
    for name, rows, src in (("val", val, tr), ("test", test, te)):
        ll = np.array([r["log_likelihoods"] for r in rows])
        n = np.array([r["n_tokens"] for r in rows])
        y = np.array([r["label"] for r in rows])
        docs = [clean_text(src[(r["id"], r["label"])]["text"], True) for r in rows]
        nb = ngram.term(counts, docs, 1.0, 0.3, 2)
        out[name] = ngram.accuracies(ll, nb, n, y, "bayes", prior, grid)
        out[name]["alone"] = float(np.mean((nb + prior).argmax(1) == y))
        print(name, out[name])
    print("chosen on val:", ngram.choose_weight({w: out["val"][w] for w in grid}))


if __name__ == "__main__":
    main(sys.argv[1], [float(g) for g in sys.argv[2].split(",")])
