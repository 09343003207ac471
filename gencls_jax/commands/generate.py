"""Synthetic reviews from a run's class models: sample, filter, score, write `synthetic.jsonl`.

The original system found that mixing such reviews into training *lowered* accuracy. To study
why, every kept sample carries its length and the classifier's own margin
log p(x|c) - max_{c' != c} log p(x|c'), and the run's statistics (length, distinct n-grams,
margins, how many were filtered) land in `synthetic_stats.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import jax
import numpy as np
from absl import logging

from gencls_jax import conditioning
from gencls_jax.data.clean import clean_text
from gencls_jax.data.pipeline import label_prefixes, tokenize_dataset
from gencls_jax.data.sources import Dataset
from gencls_jax.data.tokenize import Tokenizer
from gencls_jax.model import decode
from gencls_jax.runs import load
from gencls_jax.runs import workdir as wd
from gencls_jax.scoring.batched import score_dataset
from gencls_jax.system import fileio


def sample_class(
    params, model_config, g, k: int, prefix, eos_id: int, cond: conditioning.Conditioning
) -> list[list[int]]:
    """`g.per_class` token lists from class k (per-class model k, or the shared model + prefix
    k)."""
    out: list[list[int]] = []
    batch = 0
    while len(out) < g.per_class:
        gen = decode.generate_for_class(
            params,
            model_config,
            **cond.generation(k, prefix),
            batch_size=int(g.batch_size),
            rng=jax.random.fold_in(jax.random.key(int(g.seed)), 1000 * k + batch),
            max_new_tokens=int(g.max_new_tokens),
            temperature=float(g.temperature),
            top_k=int(g.top_k),
            top_p=float(g.top_p),
            eos_id=eos_id,
        )
        out.extend(decode.token_lists(gen))
        batch += 1
    return out[: g.per_class]


def select(texts: list[str], lengths: np.ndarray, margin: np.ndarray, g) -> np.ndarray:
    """Which samples to keep: at least `g.min_tokens` tokens, not blank, the first of exact
    duplicates (`g.dedupe`), margin in [`g.min_margin`, `g.max_margin`]. A high floor keeps the
    models' most typical texts; a ceiling keeps those near the decision boundary."""
    keep = (np.asarray(lengths) >= int(g.min_tokens)) & np.array(
        [bool(t.strip()) for t in texts], bool
    )
    if g.dedupe:
        first = np.zeros(len(texts), bool)
        first[decode.dedupe(texts)] = True
        keep &= first
    return keep & (margin >= float(g.min_margin)) & (margin <= float(g.max_margin))


def sample_margins(
    config,
    params,
    model_config,
    tok: Tokenizer,
    texts: list[str],
    labels: np.ndarray,
    names: Sequence[str],
) -> np.ndarray:
    """The classifier's margin log p(x|c) - max_{c' != c} log p(x|c') on each decoded sample,
    scored exactly as a test text (cleaned, re-tokenized, EOS from the rows): the text written
    to synthetic.jsonl is what a later run trains on. NaN for a sample with no text to score
    (blank once cleaned), which no margin filter keeps."""
    n = len(texts)
    scored = np.flatnonzero([bool(clean_text(t, config.data.clean_html).strip()) for t in texts])
    raw = Dataset(
        texts, labels, [f"synthetic-{i}" for i in range(n)], np.full(n, "synthetic"), tuple(names)
    )
    ds = tokenize_dataset(config, raw.subset(scored), tok)
    cond = conditioning.get(config.model.conditioning)
    ll, _ = score_dataset(params, cond, ds, tok, config, model_config, desc="scoring samples")
    own = ll[np.arange(len(ds)), ds.labels]
    other = np.where(np.eye(len(names), dtype=bool)[ds.labels], -np.inf, ll).max(1)
    margin = np.full(n, np.nan)
    margin[scored] = own - other
    return margin


def generate_synthetic(config, workdir: str | Path, which: str = "best") -> dict:
    workdir = Path(workdir)
    info, model_config, params, step, tok, _ = load.load_run(
        config, workdir, which, purpose="generate for"
    )
    cond, names = conditioning.get(info["conditioning"]), info["label_names"]
    g, d = config.generate, config.data
    wd.append_history(workdir, "generate", checkpoint=which, evaluated_step=step, output=g.output)
    prefixes = label_prefixes(tok, d.label_prefix_template, names)

    texts, labels, toks = [], [], []
    for k, name in enumerate(names):
        lists = sample_class(params, model_config, g, k, prefixes[k], tok.eos_id, cond)
        decoded = tok.decode_batch(lists)
        texts += decoded
        labels += [k] * len(decoded)
        toks += lists
        logging.info("class %s: %d samples", name, len(lists))
    labels = np.asarray(labels, np.int32)
    lengths = np.array([len(t) for t in toks])
    margin = sample_margins(config, params, model_config, tok, texts, labels, names)
    keep = select(texts, lengths, margin, g)

    sampling = {k: g[k] for k in ("temperature", "top_k", "top_p", "max_new_tokens", "seed")}
    out_path = workdir / g.output
    with fileio.atomic_open(out_path) as f:
        for i in np.flatnonzero(keep):
            f.write(
                json.dumps(
                    {
                        "text": texts[i],
                        "label": names[labels[i]],
                        "origin": "synthetic",
                        "n_tokens": int(lengths[i]),
                        "margin": float(margin[i]),
                        "model": str(workdir),
                        "checkpoint_step": int(step),
                        "sampling": sampling,
                    }
                )
                + "\n"
            )
    stats = {
        "file": str(out_path),
        "generated": int(len(texts)),
        "kept": int(keep.sum()),
        "per_class": {},
    }
    for k, name in enumerate(names):
        sel = (labels == k) & keep
        stats["per_class"][name] = {
            "generated": int((labels == k).sum()),
            "kept": int(sel.sum()),
            "mean_tokens": float(lengths[sel].mean()) if sel.any() else 0.0,
            "distinct_1": decode.distinct_ngrams([toks[i] for i in np.flatnonzero(sel)], 1),
            "distinct_2": decode.distinct_ngrams([toks[i] for i in np.flatnonzero(sel)], 2),
            "mean_margin": float(margin[sel].mean()) if sel.any() else 0.0,
            "classified_as_own_class": float((margin[labels == k] > 0).mean()),
        }
    fileio.write_text(workdir / "synthetic_stats.json", json.dumps(stats, indent=2))
    for k, name in enumerate(names):
        for i in np.flatnonzero((labels == k) & keep)[:2]:
            print(f"[{name}] margin {margin[i]:+.1f}: {texts[i][:300]!r}")
    return stats
