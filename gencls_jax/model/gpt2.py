"""GPT-2 in Flax (linen), written from scratch.

The parameter tree mirrors Hugging Face's GPT-2 names (wte, wpe, h/ln_1, h/attn/c_attn, ...),
so weight conversion is a rename, not a reshuffle. The transformer blocks are one
`nn.scan` over a stacked layer axis (one parameter layout for every depth, rematerialisation
as one switch), unrolled by default (`layer_unroll`): a rolled loop cost 25% of the step time
on an H100 (BUILD_NOTES.md), and `layer_unroll=1` keeps compile time flat for deep models.

Masking is by *segment ids*: a token attends to earlier tokens of its own segment only.
Padding is segment 0, real text is segment >= 1, and several texts packed in one row get
segments 1, 2, 3, ... with positions restarting per text. One mechanism serves padding,
left/right padding and packing, and every query row always sees at least itself (no NaN).
Without segment ids the mask is causal only, which is exact for the real tokens of
right-padded rows (padding comes after them) and lets cuDNN use its built-in causal kernel.

Incremental decoding passes a `KVCache` (explicit, no mutable collection): the new tokens
attend to the cached slots and to each other, and the call returns the cache with their
keys/values written at `cache.index`. Without a cache nothing changes.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from gencls_jax.model.head import lm_logits

Array = jax.Array

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class GPT2Config:
    """Architecture plus the numerics policy. Frozen and hashable: a static jit argument."""

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    layer_norm_epsilon: float = 1e-5
    dropout: float = 0.1  # embedding and residual dropout (HF's embd_pdrop / resid_pdrop)
    dropout_masks: str = "hash"  # 'hash': `hashed_keep` (cheaper) | 'jax': jax.random.bernoulli
    bos_token_id: int = 50256  # <|endoftext|>: GPT-2's BOS and EOS
    dtype: str = "float32"  # compute dtype; parameters always stay float32
    remat: str = "none"  # 'none' | 'full' | 'dots' (save matmul outputs, recompute the rest)
    attention: str = "xla"  # 'xla' | 'cudnn' (jax.nn.dot_product_attention implementation)
    layer_unroll: int = 0  # layers per scan iteration; 0 = all (fastest on GPU), 1 under remat
    head_chunk: int = 8192  # scoring: tokens per chunk of the head
    #   (bounds its float32 [tokens, vocab] logits)
    scoring_head: str = "xla"  # 'xla' (chunked logits) | 'pallas' (`head_kernel`, GPU kernel)
    head_tiles: str = "128,256,64,8,3"  # pallas head: rows, vocab, k, warps, stages (a string:
    #   the config is saved as JSON; `tile_sizes` reads it)
    max_segments: int = 0  # packed rows: texts per row at most, set by the caller that packs;
    #   > 0 with attention='cudnn': cuDNN's segment-offsets kernel (`attention_cudnn_packed`)
    packed_offsets_from: int = 512  # ... for rows at least this long; shorter: the dense mask

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.remat not in ("none", "full", "dots"):
            raise ValueError(f"model.remat must be 'none', 'full' or 'dots', got {self.remat!r}")
        if self.dropout_masks not in ("jax", "hash"):
            raise ValueError(
                f"model.dropout_masks must be 'jax' or 'hash', got {self.dropout_masks!r}"
            )
        if self.attention not in ("xla", "cudnn"):
            raise ValueError(f"model.attention must be 'xla' or 'cudnn', got {self.attention!r}")
        if self.remat != "none" and self.layer_unroll >= self.n_layer:
            raise ValueError(
                f"model.remat={self.remat} saves no memory with model.layer_unroll="
                f"{self.layer_unroll} >= {self.n_layer} layers (no loop left): set it below, or 0"
            )
        if self.max_segments < 0 or self.packed_offsets_from < 0:
            raise ValueError(
                f"max_segments and model.packed_offsets_from must be >= 0, got "
                f"{self.max_segments}, {self.packed_offsets_from}"
            )
        if self.scoring_head not in ("xla", "pallas"):
            raise ValueError(
                f"model.scoring_head must be 'xla' or 'pallas', got {self.scoring_head!r}"
            )
        tiles = self.head_tiles.split(",")
        if (
            len(tiles) != 5
            or not all(t.strip().isdigit() for t in tiles)
            or not all(t > 0 for t in self.tile_sizes)
            or any(t & (t - 1) for t in self.tile_sizes[:3])
        ):
            raise ValueError(
                "model.head_tiles must be 5 positive integers 'rows,vocab,k,warps,stages' (the "
                f"first three powers of 2), got {self.head_tiles!r}"
            )
        if self.head_chunk <= 0:
            raise ValueError(f"model.head_chunk must be > 0, got {self.head_chunk}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")

    @property
    def compute_dtype(self):
        return DTYPES[self.dtype]

    @property
    def tile_sizes(self) -> tuple[int, ...]:
        """`head_tiles` as ints: (rows, vocab, k, warps, stages) of the Pallas head's tiles."""
        return tuple(int(t) for t in self.head_tiles.split(","))

    @property
    def scan_unroll(self) -> int:
        """Layers per scan iteration: `layer_unroll`, where 0 means all of them, except under
        remat: a fully unrolled stack is straight-line code, where XLA recomputes each layer as
        soon as its inputs exist and keeps the result, so remat saved nothing (gpt2-medium,
        T=1024, batch 16: 26.1 GiB with and without it on the H200); one layer per iteration
        keeps the recomputation inside the backward loop."""
        if self.layer_unroll:
            return self.layer_unroll
        return self.n_layer if self.remat == "none" else 1

    def replace(self, **kw) -> "GPT2Config":
        return dataclasses.replace(self, **kw)


# The published sizes, plus a tiny one for tests and CPU runs.
SIZES: dict[str, dict[str, int]] = {
    "gpt2": dict(n_layer=12, n_embd=768, n_head=12),
    "gpt2-medium": dict(n_layer=24, n_embd=1024, n_head=16),
    "gpt2-large": dict(n_layer=36, n_embd=1280, n_head=20),
    "gpt2-xl": dict(n_layer=48, n_embd=1600, n_head=25),
    "tiny": dict(n_layer=2, n_embd=64, n_head=4, n_positions=256),
}


def config_for(size: str, **overrides: Any) -> GPT2Config:
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; known: {sorted(SIZES)}")
    return GPT2Config(**{**SIZES[size], **overrides})


def resolve_config(base: GPT2Config, m: Any) -> GPT2Config:
    """`base` (an architecture, e.g. from pretrained weights) with the numerics and regularisation
    of `config.model` (`m`): dtype, remat, attention ('auto': cuDNN on GPUs, XLA elsewhere),
    dropout, layer unroll, head chunk, scoring head ('auto': the Pallas kernel on one Hopper GPU,
    XLA elsewhere) and its tiles, packed rows' kernel."""
    attention = m.attention
    if attention == "auto":
        attention = "cudnn" if jax.default_backend() == "gpu" else "xla"
    scoring_head = m.scoring_head
    if scoring_head == "auto":
        # the kernel's tiles were measured on one Hopper GPU (sm_90); it has no sharding rule, so
        # on several devices XLA would gather its inputs to each of them: XLA's head there
        one_hopper = (
            jax.default_backend() == "gpu"
            and jax.device_count() == 1
            and getattr(jax.devices()[0], "compute_capability", "") == "9.0"
        )
        scoring_head = "pallas" if one_hopper else "xla"
    return base.replace(
        dtype=m.dtype,
        remat=m.remat,
        attention=attention,
        dropout=float(m.dropout),
        dropout_masks=str(m.dropout_masks),
        layer_unroll=int(m.layer_unroll),
        head_chunk=int(m.head_chunk),
        scoring_head=str(scoring_head),
        head_tiles=str(m.head_tiles),
        packed_offsets_from=int(m.packed_offsets_from),
    )


def _normal(std: float):
    return nn.initializers.normal(stddev=std)


def causal_segment_mask(segment_ids: Array | None, t: int) -> Array:
    """[B, T] segment ids -> [B, 1, T, T] bool: same segment and not in the future.
    Without segment ids: the causal mask alone, [1, 1, T, T]."""
    causal = jnp.tril(jnp.ones((t, t), dtype=bool))[None, None]
    if segment_ids is None:
        return causal
    return (segment_ids[:, None, :, None] == segment_ids[:, None, None, :]) & causal


def attention_xla(q: Array, k: Array, v: Array, mask: Array) -> Array:
    """Plain softmax attention: matmuls in the compute dtype, softmax in float32.

    Written out (rather than jax.nn.dot_product_attention's XLA path) because that path asks
    for float16 x float16 -> float32 dots, which XLA:CPU lacks."""
    scale = q.shape[-1] ** -0.5
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) * scale
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", probs, v)


def segment_layout(segment_ids: Array, m: int) -> tuple[Array, Array]:
    """[B, T] segment ids (1..n in order from the row's start, 0 = padding after them) ->
    (lengths [B, m], offsets [B, m + 1]) in cuDNN's packed layout: each segment's length and
    first position in its row, -1 past the row's last segment. m >= the most segments a row
    holds (a row with more would lose the ones past m: callers bound it by the texts a batch
    holds)."""
    hot = segment_ids[..., None] == jnp.arange(1, m + 1, dtype=segment_ids.dtype)  # [B, T, m]
    lengths = jnp.sum(hot, axis=1, dtype=jnp.int32)
    starts = jnp.cumsum(lengths, axis=-1) - lengths
    lengths = jnp.where(lengths > 0, lengths, -1)
    offsets = jnp.where(lengths > 0, starts, -1)
    return lengths, jnp.pad(offsets, ((0, 0), (0, 1)), constant_values=-1)


def attention_cudnn_packed(q: Array, k: Array, v: Array, segment_ids: Array, m: int) -> Array:
    """Packed rows through cuDNN's own segment layout (lengths and offsets, its padding-causal
    mask): the kernel skips the blocks outside each text as its causal kernel does, where a dense
    [B, H, T, T] mask makes it compute them all (H200, 16 x 1,024 rows of texts ~300 tokens:
    0.40 ms forward + backward per layer against 1.17 with the mask, 0.45 right-padded;
    `bench/check_cudnn_packed.py`). jax passes offsets only through its private cuDNN module,
    and its batching rule takes no offsets: call it outside `vmap` (`scoring.score` folds a
    class axis into rows). The kernel leaves padding slots unset, outputs and gradients alike:
    `where` on both sides keeps whatever they hold out of the rest of the step."""
    real = (segment_ids > 0)[..., None, None]
    q, k, v = (jnp.where(real, a, jnp.zeros((), a.dtype)) for a in (q, k, v))
    y = cudnn_segments(q, k, v, *segment_layout(segment_ids, m))
    return jnp.where(real, y, jnp.zeros((), y.dtype))


def cudnn_segments(q: Array, k: Array, v: Array, lengths: Array, offsets: Array) -> Array:
    """cuDNN's attention over segments given as (lengths [B, M], offsets [B, M + 1]), causal
    within each: the one call of jax's private module (`bench/check_cudnn_packed.py` feeds it
    a layout computed in NumPy)."""
    from jax._src.cudnn import fused_attention_stablehlo as fa

    return fa.dot_product_attention(
        q,
        k,
        v,
        q_seqlen=lengths,
        kv_seqlen=lengths,
        q_offsets=offsets,
        kv_offsets=offsets,
        scale=q.shape[-1] ** -0.5,
        mask_type=fa.MaskType.PADDING_CAUSAL,
    )


def attention_cached(
    q: Array, k: Array, v: Array, mask: Array, k_cache: Array, v_cache: Array, cache_mask: Array
):
    """Attention over [cached slots, new tokens] without writing the new keys into the cache
    first: one softmax over both score blocks, so the per-layer cache is only read."""
    scale = q.shape[-1] ** -0.5
    neg = jnp.finfo(jnp.float32).min
    s_old = jnp.einsum("bqhd,bkhd->bhqk", q, k_cache).astype(jnp.float32) * scale
    s_new = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) * scale
    s = jnp.concatenate([jnp.where(cache_mask, s_old, neg), jnp.where(mask, s_new, neg)], axis=-1)
    probs = jax.nn.softmax(s, axis=-1).astype(v.dtype)
    p_old, p_new = probs[..., : k_cache.shape[1]], probs[..., k_cache.shape[1] :]
    return jnp.einsum("bhqk,bkhd->bqhd", p_old, v_cache) + jnp.einsum("bhqk,bkhd->bqhd", p_new, v)


class KVCache(NamedTuple):
    """Keys/values of every layer for incremental decoding (see `init_cache`).

    k, v: [n_layer, B, S, H, Dh] in the compute dtype; segment_ids: [B, S], 0 for empty slots
    and padding, so both are masked like padding; index: int32 scalar, the slots filled so far."""

    k: Array
    v: Array
    segment_ids: Array
    index: Array


def init_cache(config: GPT2Config, batch: int, length: int) -> KVCache:
    """An empty cache of `length` slots (prompt plus new tokens)."""
    shape = (config.n_layer, batch, length, config.n_head, config.n_embd // config.n_head)
    zeros = jnp.zeros(shape, config.compute_dtype)
    return KVCache(zeros, zeros, jnp.zeros((batch, length), jnp.int32), jnp.zeros((), jnp.int32))


class Attention(nn.Module):
    config: GPT2Config

    @nn.compact
    def __call__(
        self,
        x: Array,
        segment_ids: Array | None,
        kv: tuple[Array, Array] | None = None,
        cache_mask: Array | None = None,
    ):
        """Without `kv`: [B, T, D] -> [B, T, D]. With this layer's cached (k, v) [B, S, H, Dh] and
        `cache_mask` [B, 1, T, S]: returns (output, (new k, new v)) for the caller to store."""
        c = self.config
        b, t, d = x.shape
        dh = d // c.n_head
        qkv = nn.Dense(3 * d, dtype=c.compute_dtype, kernel_init=_normal(0.02), name="c_attn")(x)
        q, k, v = jnp.split(qkv.reshape(b, t, 3, c.n_head, dh), 3, axis=2)
        q, k, v = (a[:, :, 0] for a in (q, k, v))  # [B, T, H, Dh]
        mask = causal_segment_mask(segment_ids, t)
        if kv is not None:
            # decoding: plain XLA attention (cuDNN's fused kernel is for training shapes)
            y = attention_cached(q, k, v, mask, kv[0], kv[1], cache_mask)
        elif c.attention == "cudnn" and segment_ids is None:
            # cuDNN's own causal mask: no [T, T] tensor
            y = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="cudnn")
        elif c.attention == "cudnn" and c.max_segments and t >= c.packed_offsets_from:
            # packed rows with a known bound of texts per row (H200, decision steps: 1.17x the
            # masked step at T = 1,024; 0.78x at T = 64, where the mask is small: BUILD_NOTES)
            y = attention_cudnn_packed(q, k, v, segment_ids, min(c.max_segments, t))
        elif c.attention == "cudnn":  # packed rows: the segment mask, one copy per head (cuDNN's
            # mask layout; a broadcast head axis breaks under the class-axis vmap)
            mask = jnp.broadcast_to(mask, (b, c.n_head, t, t))
            y = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="cudnn")
        else:
            y = attention_xla(q, k, v, mask)
        y = y.reshape(b, t, d)
        proj_std = 0.02 / (2 * c.n_layer) ** 0.5  # GPT-2's scaled init of residual projections
        y = nn.Dense(d, dtype=c.compute_dtype, kernel_init=_normal(proj_std), name="c_proj")(y)
        return y if kv is None else (y, (k, v))


class MLP(nn.Module):
    config: GPT2Config

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c = self.config
        h = nn.Dense(4 * c.n_embd, dtype=c.compute_dtype, kernel_init=_normal(0.02), name="c_fc")(x)
        h = jax.nn.gelu(h, approximate=True)  # HF's "gelu_new"
        proj_std = 0.02 / (2 * c.n_layer) ** 0.5
        return nn.Dense(
            c.n_embd, dtype=c.compute_dtype, kernel_init=_normal(proj_std), name="c_proj"
        )(h)


def _mix32(x: Array) -> Array:
    """lowbias32 (C. Wellons' hash-prospector): a bijective 32-bit integer mixer with near-ideal
    avalanche, five integer ops and two multiplies."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def hashed_keep(key: Array, shape: tuple[int, ...], rate: float) -> Array:
    """Dropout's keep mask (True with probability 1 - rate) from a counter hash: each element's
    flat index, XORed with each word of the key in turn and mixed (`_mix32`).

    Why: `jax.random.bernoulli` draws 32 random bits per element through threefry (20 rounds)
    or XLA's RngBitGenerator, a kernel of its own per dropout site; a few integer ops of the
    index fuse into the op that applies the mask. Each round is a bijection of the index, so
    for one key exactly round(rate * 2^32) of every 2^32 indices are dropped; dropout needs no
    more randomness than that (sites and steps get their own keys, as with `bernoulli`)."""
    words = jax.random.key_data(key).reshape(-1).astype(jnp.uint32)
    idx = jnp.zeros(shape, jnp.uint32)
    for axis, n in enumerate(shape):  # row-major flat index, modulo 2^32
        idx = idx * jnp.uint32(n) + jax.lax.broadcasted_iota(jnp.uint32, shape, axis)
    h = idx
    for i in range(words.shape[0]):
        h = _mix32(h ^ words[i])
    return h >= jnp.uint32(min(round(rate * 2**32), 2**32 - 1))


class Dropout(nn.Module):
    """flax's `nn.Dropout` (same keys: `make_rng('dropout')` under the same module names) with
    the mask drawn by `jax.random.bernoulli` ('jax', flax's numbers) or `hashed_keep`
    ('hash', `model.dropout_masks`)."""

    rate: float
    masks: str = "jax"
    deterministic: bool = True

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.rate == 0.0 or self.deterministic:
            return x
        if self.rate == 1.0:
            return jnp.zeros_like(x)
        key = self.make_rng("dropout")
        keep_prob = 1.0 - self.rate
        if self.masks == "hash":
            keep = hashed_keep(key, x.shape, self.rate)
        else:
            keep = jax.random.bernoulli(key, p=keep_prob, shape=x.shape)
        return jax.lax.select(keep, x / keep_prob, jnp.zeros_like(x))


class Block(nn.Module):
    """Pre-LayerNorm block. The residual stream stays float32 (GPT-2's activations overflow
    float16); only the matmul inputs are cast to the compute dtype."""

    config: GPT2Config
    deterministic: bool = True

    @nn.compact
    def __call__(
        self,
        x: Array,
        segment_ids: Array | None,
        kv: tuple[Array, Array] | None = None,
        cache_mask: Array | None = None,
    ):
        c = self.config
        ln = functools.partial(nn.LayerNorm, epsilon=c.layer_norm_epsilon, dtype=c.compute_dtype)
        drop = Dropout(c.dropout, c.dropout_masks, deterministic=self.deterministic)
        new_kv = None
        if kv is None:
            y = Attention(c, name="attn")(ln(name="ln_1")(x), segment_ids)
        else:
            y, new_kv = Attention(c, name="attn")(ln(name="ln_1")(x), segment_ids, kv, cache_mask)
        x = x + drop(y)
        x = x + drop(MLP(c, name="mlp")(ln(name="ln_2")(x)))
        return x, new_kv


class GPT2(nn.Module):
    """GPT-2 language model. `__call__` returns float32 logits; `return_hidden=True` returns the
    final-LayerNorm features instead, for losses that apply the tied head in chunks. With a
    `cache`, it returns (logits or features, updated cache)."""

    config: GPT2Config

    @nn.compact
    def __call__(
        self,
        tokens: Array,
        positions: Array | None = None,
        segment_ids: Array | None = None,
        deterministic: bool = True,
        return_hidden: bool = False,
        cache: KVCache | None = None,
        embed_delta: Array | None = None,
    ):
        c = self.config
        b, t = tokens.shape
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
        if segment_ids is None and cache is not None:
            segment_ids = jnp.ones((b, t), jnp.int32)
        wte = nn.Embed(c.vocab_size, c.n_embd, embedding_init=_normal(0.02), name="wte")
        wpe = nn.Embed(c.n_positions, c.n_embd, embedding_init=_normal(0.02), name="wpe")
        emb = wte(tokens)
        if embed_delta is not None:  # adversarial training's [B, T, D] perturbation
            emb = emb + embed_delta
        x = emb + wpe(positions)
        x = Dropout(c.dropout, c.dropout_masks, deterministic=deterministic)(x)

        block = Block
        if c.remat != "none":
            policy = (
                None
                if c.remat == "full"
                else jax.checkpoint_policies.dots_with_no_batch_dims_saveable
            )
            block = nn.remat(Block, prevent_cse=False, policy=policy)  # in a loop: no CSE
        blocks = nn.scan(
            block,
            variable_axes={"params": 0},
            split_rngs={"params": True, "dropout": True},
            in_axes=(
                nn.broadcast,
                0,
                nn.broadcast,
            ),  # segment ids, per-layer cached (k, v), cache mask
            length=c.n_layer,
            unroll=c.scan_unroll,
        )(c, deterministic, name="h")
        if cache is None:
            x, _ = blocks(x, segment_ids, None, None)
        else:
            # Cached slot j is visible to a new token iff it is filled (j < index) and in its
            # segment.
            filled = jnp.arange(cache.segment_ids.shape[1]) < cache.index
            cache_mask = (
                segment_ids[:, None, :, None] == cache.segment_ids[:, None, None, :]
            ) & filled
            x, (k, v) = blocks(x, segment_ids, (cache.k, cache.v), cache_mask)
            at = (0, 0, cache.index, 0, 0)
            cache = KVCache(
                jax.lax.dynamic_update_slice(cache.k, k.astype(cache.k.dtype), at),
                jax.lax.dynamic_update_slice(cache.v, v.astype(cache.v.dtype), at),
                jax.lax.dynamic_update_slice(
                    cache.segment_ids, segment_ids.astype(jnp.int32), (0, cache.index)
                ),
                cache.index + t,
            )
        h = nn.LayerNorm(epsilon=c.layer_norm_epsilon, dtype=c.compute_dtype, name="ln_f")(x)
        out = h if return_hidden else lm_logits(h, wte.embedding, c.compute_dtype)
        return out if cache is None else (out, cache)


def init_params(config: GPT2Config, seed: int = 0) -> dict:
    """Random GPT-2 parameters (GPT-2's own init), float32, as one jitted program (op by op,
    flax's init took 9-12 s on 2 CPU cores). flax makes them by running a forward pass, whose
    compile is the cost: the values depend only on the parameter layout and the seed, so the
    pass is the cheapest that has it (XLA attention, a rolled layer loop, one token: on the
    H200 a scratch run compiled the full pass 15-21 s; on 2 CPU cores 4.4 s -> 1.2 s)."""
    return _init_params(init_config(config), seed)


def init_config(config: GPT2Config) -> GPT2Config:
    """The cheapest forward pass to compile with `config`'s parameter layout."""
    return dataclasses.replace(
        config, attention="xla", layer_unroll=1, remat="none", dropout=0.0, max_segments=0
    )


@functools.partial(jax.jit, static_argnums=0)
def _init_params(config: GPT2Config, seed) -> dict:
    tokens = jnp.zeros((1, 1), jnp.int32)
    return GPT2(config).init(jax.random.key(seed), tokens)["params"]


def apply(
    params: dict,
    tokens: Array,
    config: GPT2Config,
    positions: Array | None = None,
    segment_ids: Array | None = None,
    *,
    dropout_rng: Array | None = None,
    return_hidden: bool = False,
    cache: KVCache | None = None,
    embed_delta: Array | None = None,
):
    """Pure forward pass. Dropout is on exactly when `dropout_rng` is given. With a `cache`
    (decoding), returns (logits, updated cache); `positions` must then be given. `embed_delta`
    [B, T, D]: added to the token embeddings (adversarial training's perturbation)."""
    rngs = None if dropout_rng is None else {"dropout": dropout_rng}
    return GPT2(config).apply(
        {"params": params},
        tokens,
        positions,
        segment_ids,
        deterministic=dropout_rng is None,
        return_hidden=return_hidden,
        cache=cache,
        embed_delta=embed_delta,
        rngs=rngs,
    )


def count_params(params: Any) -> int:
    return sum(x.size for x in jax.tree_util.tree_leaves(params))
