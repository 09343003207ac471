"""The discriminative baseline on equal terms (issue 14): the same GPT-2 init, data, recipe and
budget as configs/decision.py, with a linear head on the mean of the text's features instead of
class-conditional likelihoods. Answers "generative or discriminative?" beside decision.py.
"""

from configs import decision


def get_config():
    c = decision.get_config()
    c.model.conditioning = "discriminative"
    c.model.pool = "mean"
    c.data.batching = "bucket"  # the head reads one text per row (packed rows are refused)
    return c
