"""The decision-trained generative classifier on a small labelled set of any kind (issue 14:
SST-2, TREC, or a set we do not see), started from the IMDB language model.

Point it at the files: --config.data.train_path, --config.data.test_path and, when the set has
one, --config.data.val_path (else 5% of train is held out); label names come from the data.
Short texts and small sets: more epochs than IMDB (early stopping on validation accuracy picks
the checkpoint), and a label prefix that names no domain. The n-gram expert is on, with
decision.py's grid of weights (eval chooses one on val).
"""

from configs import decision


def get_config():
    c = decision.get_config()
    c.data.source = "jsonl"
    c.data.label_names = ()
    c.data.label_prefix_template = "Label: {label_name}\n"
    c.data.bucket_lengths = (64, 128, 256)  # sentences and questions: short rows
    c.data.max_len = 256
    c.train.epochs = 6
    c.eval.sample_per_class = 0
    c.eval.train_sample_per_class = 100
    return c
