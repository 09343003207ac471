"""Full, 10 epochs: does training longer than the original's 6 epochs still help?

The original team's run in progress. Same recipe as full_6e; early stopping on validation
loss (patience 2) guards against the over-fitting a 10-epoch per-class LM is prone to.
"""

from configs import full_6e


def get_config():
    c = full_6e.get_config()
    c.train.epochs = 10
    c.train.early_stop_patience = 2
    return c
