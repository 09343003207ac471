"""The model phase's pieces for configs/pretrain_unsup.py, timed one by one (2026-11-30, CPU):

    PYTHONPATH=. python bench/results/2026-11-30_h200_session7/model_phase/gap.py

IMDB from ../shared: data (read, tokenize), initial_model (scratch init), the training rows.
"""

import sys
import time
from pathlib import Path

from configs import pretrain_unsup
from gencls_jax import conditioning
from gencls_jax.commands.train import initial_model


def timed(name, fn):
    t = time.time()
    out = fn()
    print(name, round(time.time() - t, 2), flush=True)
    return out


def main():
    sys.argv = sys.argv[:1]
    d = Path(__file__).resolve().parents[5] / "shared" / "data" / "imdb"
    c = pretrain_unsup.get_config()
    c.data.source, c.progress_bars = "jsonl", False
    for split in ("train", "test", "unsup"):
        c.data[f"{split}_path"] = str(d / f"{split}.jsonl.gz")
    tok, ds = timed("data", lambda: conditioning.load_data(c, splits=("train", "val")))
    cond = conditioning.get(c.model.conditioning)
    _, params = timed("initial_model", lambda: initial_model(c, tok))
    stream = timed("train_stream", lambda: cond.train_stream(c, ds["train"], tok))
    print("steps per epoch", stream.num_batches(0))


if __name__ == "__main__":
    main()
