"""Slots a sliced decision batch uses at small_set.py's buckets, against the same rows packed."""
import json, sys, numpy as np
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained("/work/shared/data/gpt2-tokenizer")
for name in ("trec", "sst2"):
    rows = [json.loads(l) for l in open(f"/work/shared/data/{name}/train.jsonl")]
    labels = sorted({str(r["label"]) for r in rows})
    pre = max(len(tok(f"Label: {l}\n")["input_ids"]) for l in labels)
    lens = np.array([len(tok(r["text"])["input_ids"]) + pre + 1 for r in rows])
    buckets = np.array([64, 128, 256])
    slot = buckets[np.searchsorted(buckets, np.minimum(lens, 256))]
    real = np.minimum(lens, 256).sum()
    print(name, len(rows), "median", np.median(lens), "p99", np.percentile(lens, 99),
          "bucket slots used %.1f%%" % (100 * real / slot.sum()),
          "packed at 64: rows x%.2f fewer" % (slot.sum() / (64 * np.ceil(real / 64))))
