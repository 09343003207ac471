"""GPT-2 tokenization, cached on disk so the same texts are never tokenized twice.

Token lists are stored compactly as one flat int32 array plus int64 offsets (`Tokens`). The
cache key is (tokenizer identity = hash of its full serialisation, hash of the exact texts
after cleaning): any change of tokenizer, source file or cleaning option gives a new key, and
an unchanged one is a hit no matter where the texts came from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from gencls_jax.errors import DataError
from gencls_jax.system import network

log = logging.getLogger(__name__)

CACHE_FORMAT = "tokens-v1"  # bump when the stored layout changes


@dataclasses.dataclass(frozen=True)
class Tokens:
    """Ragged token lists: text i is flat[offsets[i]:offsets[i+1]]."""

    flat: np.ndarray  # int32 [total]
    offsets: np.ndarray  # int64 [N + 1]

    @staticmethod
    def from_lists(lists: Sequence[Sequence[int]]) -> "Tokens":
        lengths = np.fromiter((len(x) for x in lists), np.int64, len(lists))
        offsets = np.zeros(len(lists) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter(itertools.chain.from_iterable(lists), np.int32, int(offsets[-1]))
        return Tokens(flat, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.flat[self.offsets[i] : self.offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, idx: Sequence[int] | np.ndarray) -> "Tokens":
        idx = np.asarray(idx, np.int64)
        parts = [self[i] for i in idx]
        offsets = np.zeros(len(idx) + 1, np.int64)
        np.cumsum(self.lengths[idx], out=offsets[1:])
        flat = np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, np.int32)
        return Tokens(flat, offsets)

    def concat(self, other: "Tokens") -> "Tokens":
        return Tokens(
            np.concatenate([self.flat, other.flat]),
            np.concatenate([self.offsets[:-1], other.offsets + self.offsets[-1]]),
        )

    def to_lists(self) -> list[np.ndarray]:
        return [self[i] for i in range(len(self))]


@dataclasses.dataclass(frozen=True)
class Tokenizer:
    """What the pipeline needs of a tokenizer: a batched encoder, its identity and special ids."""

    encode_batch: Callable[[list[str]], list[list[int]]]
    identity: str  # hash of everything that decides the token ids
    eos_id: int
    bos_id: int
    decode_batch: Callable[[list[list[int]]], list[str]] | None = None  # for generated samples
    vocab_size: int = 0  # ids are < vocab_size (0: unknown)
    compact_ids: tuple[int, ...] = ()  # data.compact_vocab: the original ids kept (compact.py)


def from_hf(tok) -> Tokenizer:
    """Wrap a transformers fast tokenizer (no special tokens added: EOS is the pipeline's
    choice)."""
    backend = tok.backend_tokenizer
    identity = hashlib.sha256(backend.to_str().encode()).hexdigest()

    def encode_batch(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]

    def decode_batch(ids: list[list[int]]) -> list[str]:
        return backend.decode_batch([list(map(int, x)) for x in ids], skip_special_tokens=True)

    return Tokenizer(
        encode_batch,
        identity,
        int(tok.eos_token_id),
        int(tok.bos_token_id),
        decode_batch,
        int(backend.get_vocab_size()),
    )


def load_tokenizer(name: str, fallback: str = "") -> Tokenizer:
    """`name` as a folder, else from the HF cache, else the hub (offline, the hub is not asked:
    `network.offline`); when none has it, the `fallback` folder, said in one warning."""
    import transformers

    def from_folder(folder: Path) -> Tokenizer:
        return from_hf(transformers.AutoTokenizer.from_pretrained(str(folder)))

    if Path(name).expanduser().is_dir():
        return from_folder(Path(name).expanduser())
    if not network.is_hub_name(name):
        raise DataError(f"data.tokenizer={name}: no such folder")
    offline = network.offline()
    error = ""
    for kw in [dict(local_files_only=True)] + ([] if offline else [{}]):  # the cache, the hub
        try:
            return from_hf(transformers.AutoTokenizer.from_pretrained(name, **kw))
        except Exception as e:  # not cached, hub unreachable, unknown name, ...
            error = (
                f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            )
    why = (
        f"tokenizer {name!r}: offline ({offline}) and not in the Hugging Face cache"
        if offline
        else f"tokenizer {name!r}: could not load ({error})"
    )
    if fallback and Path(fallback).expanduser().is_dir():
        log.warning("%s; using the local tokenizer at %s (data.tokenizer_fallback)", why, fallback)
        return from_folder(Path(fallback).expanduser())
    raise DataError(f"{why}, and data.tokenizer_fallback={fallback!r} is not a folder")


def cache_key(tokenizer: Tokenizer, texts: Sequence[str]) -> str:
    h = hashlib.sha256(f"{CACHE_FORMAT}\0{tokenizer.identity}\0{len(texts)}\0".encode())
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:40]


def tokenize_texts(
    texts: Sequence[str],
    tokenizer: Tokenizer,
    cache_dir: str = "",
    batch_size: int = 1000,
    progress: bool = False,
) -> Tokens:
    """Token ids of every text (no EOS), from the cache under `cache_dir` when it has them ('' = no
    cache)."""
    path = None
    if cache_dir:
        path = Path(cache_dir).expanduser() / f"{cache_key(tokenizer, texts)}.npz"
        if path.is_file():
            with np.load(path) as z:
                tokens = Tokens(z["flat"], z["offsets"])
            if len(tokens) == len(texts):
                log.info("tokens of %d texts read from the cache %s", len(texts), path)
                return tokens
            log.warning(
                "cache file %s holds %d texts, not %d: tokenizing again",
                path,
                len(tokens),
                len(texts),
            )
    if batch_size <= 0:
        raise DataError(f"data.tokenize_batch_size must be > 0, got {batch_size}")
    starts = range(0, len(texts), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="tokenizing", unit="batch")
    lists: list[list[int]] = []
    for s in starts:
        lists.extend(tokenizer.encode_batch(list(texts[s : s + batch_size])))
    tokens = Tokens.from_lists(lists)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # atomic: no half-written cache
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
        os.close(fd)
        np.savez(tmp, flat=tokens.flat, offsets=tokens.offsets)
        os.replace(tmp, path)
    return tokens


def token_strings(tokenizer: Tokenizer, ids: Sequence[int]) -> list[str]:
    """Each token's text, concatenating to the decoded text. Byte-level BPE may split a UTF-8
    character over tokens: decoding goes on until the character is complete, and it is
    attributed to the last of its tokens (the earlier ones get '')."""
    if tokenizer.decode_batch is None:
        raise DataError("this run's tokenizer cannot decode tokens, so they cannot be shown")
    ids = [int(t) for t in ids]
    singles = tokenizer.decode_batch([[t] for t in ids])
    out: list[str] = []
    start = None  # first token of a character not yet complete
    for i, s in enumerate(singles):
        if start is None:
            if "\ufffd" not in s:
                out.append(s)
                continue
            start = i
        piece = tokenizer.decode_batch([ids[start : i + 1]])[0]
        if piece.endswith("\ufffd") and i + 1 < len(ids):
            out.append("")  # incomplete: the character's bytes go on in the next token
            continue
        out.append(piece)
        start = None
    return out
