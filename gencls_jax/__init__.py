"""gencls_jax: GPT-2 generative classifier in JAX/Flax."""

from gencls_jax.model.gpt2 import GPT2, SIZES, GPT2Config, apply, config_for, init_params
from gencls_jax.model.weights import load_pretrained, save_pretrained
from gencls_jax.scoring.score import class_log_likelihoods, sequence_log_likelihood, stack_params

__all__ = [
    "GPT2",
    "GPT2Config",
    "SIZES",
    "apply",
    "config_for",
    "init_params",
    "class_log_likelihoods",
    "sequence_log_likelihood",
    "stack_params",
    "load_pretrained",
    "save_pretrained",
]
