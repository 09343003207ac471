"""Subset: how far do 500 reviews per class and one epoch get? (original: 86.6%)

The original system's small experiment: pretrained gpt2 fine-tuned per class on 500 IMDB
reviews of each class for one epoch, batch 8, lr 5e-5; evaluated on the full test set and on
the original protocol's 1,000-review sample.
"""

from configs import base


def get_config():
    c = base.get_config()
    c.data.per_class_limit = 500
    c.data.label_names = ("neg", "pos")  # IMDB's classes, in this order (the data has 0/1)
    c.train.epochs = 1
    c.train.warmup_steps = 10
    c.train.ckpt_every = 50
    return c
