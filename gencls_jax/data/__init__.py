"""Data pipeline: sources -> cleaning -> cached tokenization -> splits -> rows -> batches -> device.

One file per step: sources (readers, labels, Dataset), clean, tokenize (Tokens, cache), splits,
rows (the BOS-shifted (inputs, targets, weights) recipe), batching (pad/bucket/pack, per-class,
scoring), prefetch (background device_put), pipeline (config.data -> all of the above).
"""

from gencls_jax.data.batching import (
    BatchSpec, PerClassStream, TrainStream, epoch_plan, make_batch, padding_fraction, scoring_batches,
)
from gencls_jax.data.clean import clean_text, clean_texts
from gencls_jax.data.pipeline import (
    batch_spec, label_prefixes, load_datasets, read_split, scoring_rows, train_stream,
)
from gencls_jax.data.prefetch import prefetch_to_device
from gencls_jax.data.rows import make_rows
from gencls_jax.data.sources import DataError, Dataset, RawSplit, UNLABELED
from gencls_jax.data.splits import per_class_sample, stratified_split
from gencls_jax.data.tokenize import Tokenizer, Tokens, load_tokenizer, tokenize_texts

__all__ = [
    "BatchSpec", "PerClassStream", "TrainStream", "epoch_plan", "make_batch", "padding_fraction",
    "scoring_batches", "clean_text", "clean_texts", "batch_spec", "label_prefixes", "load_datasets",
    "read_split", "scoring_rows", "train_stream", "prefetch_to_device", "make_rows", "DataError",
    "Dataset", "RawSplit", "UNLABELED", "per_class_sample", "stratified_split", "Tokenizer", "Tokens",
    "load_tokenizer", "tokenize_texts",
]
