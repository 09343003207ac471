"""Tiny: does the whole pipeline run, offline, on a laptop CPU, in about a minute?

A 2-layer, width-64 GPT-2 from scratch, 64 training reviews per class from the local IMDB
files, 128-token rows, one epoch, 50 test reviews per class. Accuracy is near chance by
design: this config checks plumbing (train, checkpoint, resume, eval, report), not science.
The vocabulary is compact (the training split's 2,048 most frequent ids, as in first_run.py):
with GPT-2's 50,257 the LM head is ~97% of this model's parameters and of its CPU time.
"""

from configs import base


def get_config():
    c = base.get_config()
    c.model.size = "tiny"
    c.model.init = "scratch"
    c.model.dtype = "float32"
    c.data.source = "jsonl"  # the local copy of IMDB (no tfds download)
    c.data.tokenizer = c.data.tokenizer_fallback  # the local GPT-2 tokenizer files
    c.data.label_names = ("neg", "pos")  # IMDB's classes, in this order (the data has 0/1)
    c.data.per_class_limit = 64
    c.data.val_size = 32
    c.data.max_len = 128
    c.data.compact_vocab = 2048
    c.data.bucket_lengths = (64, 128)
    c.train.epochs = 1
    c.train.batch_size = 8
    c.train.lr = 1e-3
    c.train.warmup_steps = 2
    c.train.log_every = 5
    c.train.ckpt_every = 5
    c.eval.batch_size = 16
    c.eval.test_per_class = 50
    c.eval.sample_per_class = 20
    c.eval.train_sample_per_class = 16
    c.generate.per_class = 8
    c.generate.batch_size = 8
    c.generate.max_new_tokens = 48
    c.generate.min_tokens = 1
    return c
