"""Class-conditional sampling from GPT-2: a jit-compiled decode loop over a key/value cache.

The prompt is run once (`prefill`) and fills the cache; each new token is one cached step
(`decode_step`), so the prefix is never recomputed. Prompts of different lengths are
left-padded: padding is segment 0 and positions count real tokens only, so the padding is
invisible and every row's last prompt token sits in the last column.

Sampling settings (temperature, top_k, top_p, eos) are plain arguments: the experiment
config supplies them, and they are static under jit (a new setting compiles once).
Randomness is `fold_in(rng, step)`: row r's token at step i depends only on the seed, the
step and that row's prefix, so a run with and without EOS stopping agree up to the EOS.

`generate_for_class` covers both conditionings: per-class models (stacked parameters,
index the class axis) and label-prefix models (one model, prompt = BOS + the class's prefix).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gencls_jax.model.gpt2 import GPT2Config, KVCache, apply, init_cache
from gencls_jax.model.head import lm_logits

Array = jax.Array


class Generation(NamedTuple):
    """tokens: [B, max_new_tokens] int32, `pad_id` after a row's EOS; lengths: [B] int32, the
    tokens before EOS (EOS itself not counted; max_new_tokens if the row never stopped);
    finished: [B] bool, whether the row emitted EOS."""

    tokens: Array
    lengths: Array
    finished: Array


# --- prompts -----------------------------------------------------------------------------


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token lists -> ([B, P] tokens, [B, P] mask), right-aligned so each row's last prompt
    token is in the last column (where the first new token is predicted)."""
    width = max(len(p) for p in prompts)
    tokens = np.full((len(prompts), width), pad_id, np.int32)
    mask = np.zeros((len(prompts), width), np.int32)
    for i, p in enumerate(prompts):
        if len(p):
            tokens[i, width - len(p) :] = p
            mask[i, width - len(p) :] = 1
    return tokens, mask


def _as_prompt_list(prompt_tokens: Any, batch_size: int | None) -> list[list[int]]:
    """One prompt (1-D) repeated `batch_size` times, or one prompt per row (2-D or ragged)."""
    if isinstance(prompt_tokens, (np.ndarray, jax.Array)):
        arr = np.asarray(prompt_tokens)
        if arr.ndim not in (1, 2):
            raise ValueError(
                "prompt_tokens must be 1-D (one prompt) or 2-D (one per row), "
                f"got shape {arr.shape}"
            )
        rows = [arr.tolist()] if arr.ndim == 1 else arr.tolist()
        single = arr.ndim == 1
    else:
        seq = list(prompt_tokens)
        single = len(seq) > 0 and all(np.isscalar(t) for t in seq)
        rows = [[int(t) for t in seq]] if single else [[int(t) for t in p] for p in seq]
    if single:
        return rows * (1 if batch_size is None else batch_size)
    if batch_size is not None and batch_size != len(rows):
        raise ValueError(
            f"batch_size={batch_size} but {len(rows)} prompts were given; "
            "pass one prompt to repeat it"
        )
    return rows


def _check_args(
    prompts: list[list[int]],
    config: GPT2Config,
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    eos_id: int | None,
    pad_id: int,
) -> None:
    """Every bad argument as a one-line ValueError, before anything is compiled."""
    v = config.vocab_size
    if not prompts:
        raise ValueError("no prompts given (batch_size must be >= 1)")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("empty prompt: start from at least one token (e.g. BOS)")
    if any(not 0 <= t < v for p in prompts for t in p):
        raise ValueError(f"prompt token ids must be in [0, {v})")
    if not (isinstance(max_new_tokens, (int, np.integer)) and max_new_tokens >= 1):
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    width = max(len(p) for p in prompts)
    if width + max_new_tokens > config.n_positions:
        raise ValueError(
            f"prompt of {width} tokens + max_new_tokens={max_new_tokens} = "
            f"{width + max_new_tokens} "
            f"exceeds the model's n_positions={config.n_positions}"
        )
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if not (isinstance(top_k, (int, np.integer)) and top_k >= 0):
        raise ValueError(f"top_k must be an int >= 0 (0 = off), got {top_k!r}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (1 = off), got {top_p}")
    for name, tok in (("eos_id", eos_id), ("pad_id", pad_id)):
        if tok is not None and not 0 <= tok < v:
            raise ValueError(f"{name}={tok} is outside the vocabulary [0, {v})")


# --- sampling ----------------------------------------------------------------------------


def filter_logits(logits: Array, top_k: int, top_p: float) -> Array:
    """Set logits outside the top-k, then outside the nucleus (smallest set of mass >= top_p of
    the renormalised top-k), to -inf. Threshold by value, so ties at the cut are all kept."""
    v = logits.shape[-1]
    if 0 < top_k < v:
        top = jax.lax.top_k(logits, top_k)[0]  # descending; the nucleus only needs these
    elif top_p < 1.0:
        top = -jnp.sort(-logits, axis=-1)
    else:
        return logits
    if top_p < 1.0:
        probs = jax.nn.softmax(top, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs  # 0 for the top token: it is always kept
        n_keep = jnp.sum(mass_before < top_p, axis=-1, keepdims=True)
        cutoff = jnp.take_along_axis(top, n_keep - 1, axis=-1)
    else:
        cutoff = top[..., -1:]
    return jnp.where(logits < cutoff, -jnp.inf, logits)


def sample_token(logits: Array, rng: Array, temperature: float, top_k: int, top_p: float) -> Array:
    """[B, V] float32 logits -> [B] int32 tokens. temperature 0 is greedy (argmax)."""
    if temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32) / temperature
    if 0 < top_k < logits.shape[-1]:
        # Draw among the k candidates only: same distribution, B*k random numbers instead of B*V.
        vals, idx = jax.lax.top_k(logits, top_k)
        choice = jax.random.categorical(rng, filter_logits(vals, 0, top_p), axis=-1)
        return jnp.take_along_axis(idx, choice[:, None], axis=-1)[:, 0].astype(jnp.int32)
    return jax.random.categorical(rng, filter_logits(logits, 0, top_p), axis=-1).astype(jnp.int32)


# --- cached forward passes ----------------------------------------------------------------


def prefill(
    params: dict, tokens: Array, mask: Array, config: GPT2Config, cache_len: int
) -> tuple[Array, KVCache, Array]:
    """Run left-padded prompts [B, P] once. Returns (logits for the first new token [B, V],
    the cache with P of `cache_len` slots filled, each row's next position [B])."""
    mask = mask.astype(jnp.int32)
    positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)
    cache = init_cache(config, tokens.shape[0], cache_len)
    hidden, cache = apply(params, tokens, config, positions, mask, return_hidden=True, cache=cache)
    # the head on the last column only
    logits = lm_logits(hidden[:, -1], params["wte"]["embedding"], config.compute_dtype)
    return logits, cache, positions[:, -1] + 1


def decode_step(
    params: dict, token: Array, position: Array, cache: KVCache, config: GPT2Config
) -> tuple[Array, KVCache]:
    """One new token per row ([B] token ids at [B] positions) -> (next logits [B, V], cache)."""
    seg = jnp.ones((token.shape[0], 1), jnp.int32)
    logits, cache = apply(params, token[:, None], config, position[:, None], seg, cache=cache)
    return logits[:, 0], cache


@functools.partial(
    jax.jit,
    static_argnames=(
        "config",
        "max_new_tokens",
        "temperature",
        "top_k",
        "top_p",
        "eos_id",
        "pad_id",
    ),
)
def _generate(
    params: dict,
    tokens: Array,
    mask: Array,
    rng: Array,
    *,
    config: GPT2Config,
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    eos_id: int | None,
    pad_id: int,
) -> Generation:
    b, p = tokens.shape
    # The last sampled token is never fed back, so the cache needs max_new_tokens - 1 new slots.
    logits, cache, next_pos = prefill(params, tokens, mask, config, p + max_new_tokens - 1)

    def pick(i, logits, done):
        tok = sample_token(logits, jax.random.fold_in(rng, i), temperature, top_k, top_p)
        tok = jnp.where(done, pad_id, tok)
        new_done = done if eos_id is None else done | (tok == eos_id)
        return tok, new_done

    def cond(state):
        i, _, _, _, done = state
        return (i < max_new_tokens - 1) & ~jnp.all(done)

    def body(state):
        i, cache, logits, out, done = state
        tok, done = pick(i, logits, done)
        out = out.at[:, i].set(tok)
        logits, cache = decode_step(params, tok, next_pos + i, cache, config)
        return i + 1, cache, logits, out, done

    out = jnp.full((b, max_new_tokens), pad_id, jnp.int32)
    state = (jnp.int32(0), cache, logits, out, jnp.zeros((b,), bool))
    i, _, logits, out, done = jax.lax.while_loop(cond, body, state)
    # Last token (or padding, if every row already stopped): sampled without a forward pass.
    tok, done = pick(i, logits, done)
    out = out.at[:, i].set(tok)
    if eos_id is None:
        lengths = jnp.full((b,), max_new_tokens, jnp.int32)
    else:
        first_eos = jnp.argmax(out == eos_id, axis=1).astype(jnp.int32)
        lengths = jnp.where(done, first_eos, max_new_tokens)
    return Generation(out, lengths, done)


def generate(
    params: dict,
    config: GPT2Config,
    prompt_tokens: Any,
    *,
    rng: Array | int,
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    eos_id: int | None,
    pad_id: int | None = None,
    batch_size: int | None = None,
) -> Generation:
    """Sample `max_new_tokens` per row after the prompts.

    prompt_tokens: one prompt (1-D; repeated `batch_size` times), or one per row (2-D array or
    ragged lists, left-padded here). rng: a jax key or an int seed. top_k 0 / top_p 1 = off;
    temperature 0 = greedy. eos_id None = never stop; pad_id (default eos_id, else 0) fills
    rows after their EOS. Requires longest prompt + max_new_tokens <= config.n_positions.
    """
    prompts = _as_prompt_list(prompt_tokens, batch_size)
    pad = pad_id if pad_id is not None else (eos_id if eos_id is not None else 0)
    _check_args(prompts, config, max_new_tokens, temperature, top_k, top_p, eos_id, pad)
    tokens, mask = left_pad(prompts, pad)
    key = jax.random.key(rng) if isinstance(rng, (int, np.integer)) else rng
    return _generate(
        params,
        tokens,
        mask,
        key,
        config=config,
        max_new_tokens=int(max_new_tokens),
        temperature=float(temperature),
        top_k=int(top_k),
        top_p=float(top_p),
        eos_id=None if eos_id is None else int(eos_id),
        pad_id=int(pad),
    )


def generate_for_class(
    params: dict,
    config: GPT2Config,
    *,
    class_index: int | None = None,
    prefix_tokens: Sequence[int] = (),
    batch_size: int,
    rng: Array | int,
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    eos_id: int | None,
    prepend_bos: bool = True,
) -> Generation:
    """`batch_size` samples of one class.

    per_class: `params` stacked on a leading class axis (score.stack_params) and `class_index`
    picks the class's model. label_prefix: one model's `params`, `prefix_tokens` = the class's
    label tokens. The prompt is [BOS] + prefix_tokens (BOS as in scoring, where the first text
    token is conditioned on <|endoftext|>); prepend_bos=False drops it.
    """
    if class_index is not None:
        params = jax.tree_util.tree_map(lambda x: x[class_index], params)
    prompt = ([config.bos_token_id] if prepend_bos else []) + [int(t) for t in prefix_tokens]
    if not prompt:
        raise ValueError("empty prompt: give prefix_tokens or keep prepend_bos=True")
    return generate(
        params,
        config,
        prompt,
        rng=rng,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        eos_id=eos_id,
        batch_size=batch_size,
    )


# --- post-processing ---------------------------------------------------------------------


def token_lists(gen: Generation) -> list[list[int]]:
    """Each row's generated tokens before EOS, as host lists (ready for the tokenizer)."""
    tokens, lengths = np.asarray(gen.tokens), np.asarray(gen.lengths)
    return [tokens[i, : lengths[i]].tolist() for i in range(tokens.shape[0])]


def distinct_ngrams(token_lists: Sequence[Sequence[Any]], n: int) -> float:
    """Distinct-n (Li et al., 2016): distinct n-grams / all n-grams over the whole set of
    samples; low values mean repetitive or mode-collapsed generations. 0.0 if no n-grams."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = [tuple(t[i : i + n]) for t in token_lists for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def dedupe(texts: Sequence[str]) -> list[int]:
    """Indices of the first occurrence of each text, comparing with whitespace collapsed.
    Indices rather than texts, so labels stay aligned: `[texts[i] for i in dedupe(texts)]`."""
    seen: set[str] = set()
    keep = []
    for i, t in enumerate(texts):
        key = " ".join(t.split())
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return keep
