"""Dropout's masks (`model.dropout_masks`): 'jax' is flax's `nn.Dropout` to the bit; 'hash' is a
counter hash whose masks match a NumPy uint32 reference, drop the right share, and differ per
key."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencls_jax.model import gpt2 as M


def _mix32_np(x):
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def _keep_np(words, shape, rate):
    h = np.arange(int(np.prod(shape)), dtype=np.uint32).reshape(shape)
    with np.errstate(over="ignore"):
        for w in np.asarray(words, np.uint32).reshape(-1):
            h = _mix32_np(h ^ w)
    return h >= np.uint32(round(rate * 2**32))


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
def test_hashed_keep_matches_numpy(impl):
    key = jax.random.fold_in(jax.random.key(7, impl=impl), 3)
    got = np.asarray(M.hashed_keep(key, (3, 5, 17), 0.1))
    np.testing.assert_array_equal(got, _keep_np(jax.random.key_data(key), (3, 5, 17), 0.1))


def test_hashed_keep_drops_the_rate_and_differs_per_key():
    shape, rate = (8, 256, 96), 0.1
    n = np.prod(shape)
    masks = [np.asarray(M.hashed_keep(jax.random.key(s), shape, rate)) for s in range(4)]
    for m in masks:
        # binomial: 6 standard deviations (~1,500 of 196,608)
        assert abs((~m).sum() - rate * n) < 6 * np.sqrt(n * rate * (1 - rate))
        # no structure along an axis: each position's drop share near the rate
        assert np.abs((~m).mean(axis=(0, 2)) - rate).max() < 0.1
    a, b = masks[0], masks[1]
    assert (a != b).any()
    # independent keys: P(both dropped) ~ rate^2
    assert abs((~a & ~b).mean() - rate**2) < 6 * np.sqrt(rate**2 / n)


class _Two(nn.Module):
    cls: type
    masks: str = "jax"

    @nn.compact
    def __call__(self, x):
        kw = {"masks": self.masks} if self.cls is M.Dropout else {}
        d = self.cls(0.3, deterministic=False, **kw)
        return d(x), d(x), self.cls(0.3, deterministic=False, **kw)(x)


def test_jax_masks_are_flax_dropout():
    x = jnp.arange(2 * 16 * 8, dtype=jnp.float32).reshape(2, 16, 8) + 1.0
    rngs = {"dropout": jax.random.key(5)}
    ours = _Two(M.Dropout).apply({}, x, rngs=rngs)
    flax_ = _Two(nn.Dropout).apply({}, x, rngs=rngs)
    for a, b in zip(ours, flax_, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    hashed = _Two(M.Dropout, "hash").apply({}, x, rngs=rngs)
    for h, o in zip(hashed, ours, strict=True):
        h = np.asarray(h)
        assert not np.array_equal(h, np.asarray(o))  # other masks, same scaling
        kept = h != 0
        np.testing.assert_allclose(h[kept], np.asarray(x)[kept] / 0.7, rtol=1e-6)


def test_hash_dropout_gradient_is_the_mask():
    """d/dx of hashed dropout = keep / (1 - rate), from the same key."""
    key = jax.random.key(11)
    x = jnp.ones((4, 33), jnp.float32)
    d = M.Dropout(0.25, "hash", deterministic=False)
    g = jax.grad(lambda x: d.apply({}, x, rngs={"dropout": key}).sum())(x)
    keep = np.asarray(d.apply({}, x, rngs={"dropout": key})) != 0
    np.testing.assert_allclose(np.asarray(g), keep / 0.75, rtol=1e-6)
