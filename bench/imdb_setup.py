"""What bench_epoch.py and bench_score.py share: their common flags, the start-up that lets a
torch peer share the GPU, and the per-class config over the local IMDB files."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def add_imdb_args(ap: argparse.ArgumentParser, seed_help: str) -> None:
    ap.add_argument(
        "--data",
        required=True,
        help="folder with imdb/train.jsonl.gz, imdb/test.jsonl.gz, gpt2-tokenizer/",
    )
    ap.add_argument("--size", default="gpt2", help="gencls_jax.model.gpt2.SIZES key")
    ap.add_argument(
        "--max-len", type=int, default=1024, help="data.max_len (tiny: 256, its n_positions)"
    )
    ap.add_argument("--cache-dir", default="/tmp/gencls_cache", help="tokenization cache")
    ap.add_argument("--dtype", default="bfloat16", help="our model.dtype")
    ap.add_argument("--seed", type=int, default=0, help=seed_help)
    ap.add_argument(
        "--compile-cache-dir", default="", help="config.compile_cache_dir ('' = off, as before)"
    )
    ap.add_argument(
        "--buckets", default="", help="data.bucket_lengths, comma-separated ('' = the config's)"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other config key, e.g. model.head_chunk=1024, parsed as run.py's "
        "--config.KEY=VALUE (repeatable); applied after the script's own settings",
    )


def padded_length(longest: int, multiple: int) -> int:
    """A peer batch's length: its longest text rounded up to `multiple` (DataCollatorWithPadding's
    pad_to_multiple_of; 1 = the longest text itself)."""
    return -(-int(longest) // multiple) * multiple


def start() -> None:
    """Call before importing jax: leave GPU memory for the torch peer; make configs/ importable."""
    import logging

    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    logging.basicConfig(level=logging.WARNING)


def imdb_config(args: argparse.Namespace) -> Any:
    """configs/base.py with the local IMDB files and scratch per-class models without dropout."""
    from configs import base

    c = base.get_config()
    c.seed = args.seed
    c.data.source = "jsonl"
    c.data.train_path = f"{args.data}/imdb/train.jsonl.gz"
    c.data.test_path = f"{args.data}/imdb/test.jsonl.gz"
    c.data.tokenizer = c.data.tokenizer_fallback = f"{args.data}/gpt2-tokenizer"
    c.data.cache_dir = args.cache_dir
    c.data.max_len = args.max_len
    c.compile_cache_dir = args.compile_cache_dir
    if args.buckets:
        c.data.bucket_lengths = tuple(int(x) for x in args.buckets.split(","))
    c.model.init = "scratch"
    c.model.size = args.size
    c.model.dtype = args.dtype
    c.model.dropout = 0.0
    c.model.conditioning = "per_class"
    return set_keys(c, args.set)


def set_keys(config: Any, items: list[str]) -> Any:
    """`--set KEY=VALUE ...` on the config through run.py's own override parser
    (`config_keys.overridden`: the key must exist, the value takes the key's type), one line
    naming the item on a bad one."""
    from absl import flags

    from gencls_jax import config_keys

    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set {item!r}: not KEY=VALUE")
        try:
            config, _ = config_keys.overridden(config, ["bench", f"--config.{item}"])
        except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as err:
            raise SystemExit(f"--set {item!r}: {' '.join(str(err).split())}") from None
    return config
