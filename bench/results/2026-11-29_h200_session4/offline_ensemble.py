"""Seed ensembles computed afterwards from saved predictions (the members ran on different
machines, so `--mode=eval --workdirs=` could not run): mean of the members' per-class
log-likelihoods + the log prior, argmax; no offsets, temperature or n-gram expert refitted
(the ensemble command fits those on validation). Usage: offline_ensemble.py RUN_DIR...
"""

import json
import math
import sys

import numpy as np


def load(path):
    rows = [json.loads(line) for line in open(path)]
    key = [(r["id"], r["label"]) for r in rows]
    return key, np.array([r["log_likelihoods"] for r in rows]), np.array([r["label"] for r in rows])


for split in ("val", "test"):
    members = [load(f"{d}/predictions_{split}.jsonl") for d in sys.argv[1:]]
    key0 = members[0][0]
    assert all(m[0] == key0 for m in members), "members scored other texts"
    labels = members[0][2]
    prior = np.log(np.bincount(labels, minlength=members[0][1].shape[1]) / len(labels))
    accs = [float(np.mean(np.argmax(m[1] + prior, 1) == labels)) for m in members]
    mean = np.mean([m[1] for m in members], axis=0)
    acc = float(np.mean(np.argmax(mean + prior, 1) == labels))
    print(f"{split}: n={len(labels)} members {[round(100 * a, 2) for a in accs]} "
          f"ensemble {100 * acc:.2f}%")
