"""In-domain pretraining: a GPT-2 language model of movie reviews, from scratch.

Pretrained GPT-2 weights cannot be downloaded on our machines. This run trains one
unconditional gpt2-sized LM on IMDB's 50,000 unlabeled reviews plus the train texts without
labels (the test split is never read), and exports it as a Hugging Face folder
(`<workdir>/export`). Class-conditional runs then start from it:
    --config.model.init=<workdir>/export
It is also domain-adaptive pretraining for users who do have the hub weights.
"""

from configs import base


def get_config():
    c = base.get_config()
    c.model.conditioning = "unconditional"
    c.model.init = "scratch"
    c.data.pretrain_splits = ("unsup", "train")  # texts only; labels ignored
    c.train.epochs = 4
    c.train.batch_size = 32
    c.train.lr = 6e-4
    c.train.weight_decay = 0.1
    c.train.b2 = 0.95
    c.train.warmup_steps = 500
    c.train.ckpt_every = 1000
    c.eval.splits = ()
    return c
