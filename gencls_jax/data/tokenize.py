"""GPT-2 tokenization, cached on disk so the same texts are never tokenized twice.

Token lists are stored compactly as one flat int32 array plus int64 offsets (`Tokens`). The
cache key is (tokenizer identity = hash of its full serialisation, hash of the exact texts
after cleaning): any change of tokenizer, source file or cleaning option gives a new key, and
an unchanged one is a hit no matter where the texts came from.

A cold cache tokenizes in a pool of worker processes (`data.tokenize_workers`, one per core by
default), each with its own single-threaded copy of the tokenizer, over batches of
`data.tokenize_batch_size` texts: the token ids are the same as in one process, batch by batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import signal
import tempfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, BinaryIO, Callable, Sequence

import numpy as np

from gencls_jax.errors import DataError
from gencls_jax.system import network

log = logging.getLogger(__name__)

CACHE_FORMAT = "tokens-v1"  # bump when the stored layout changes
TOKENIZER_FORMAT = "tokenizer-v1"  # likewise for the kept tokenizers (_from_folder)


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

    @staticmethod
    def join(parts: Sequence["Tokens"]) -> "Tokens":
        """The texts of `parts`, one part after the other."""
        lengths = np.concatenate([np.zeros(1, np.int64)] + [p.lengths for p in parts])
        flat = [p.flat for p in parts]
        return Tokens(
            np.concatenate(flat).astype(np.int32) if flat else np.zeros(0, np.int32),
            np.cumsum(lengths),
        )

    def take(self, idx: Sequence[int] | np.ndarray) -> "Tokens":
        idx = np.asarray(idx, np.int64)
        lengths = self.lengths[idx]
        offsets = np.zeros(len(idx) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if np.all(idx[1:] > idx[:-1]):  # increasing (the usual subset): a mask keeps the order
            if len(idx) == len(self):
                return self
            keep = np.zeros(len(self), bool)
            keep[idx] = True
            return Tokens(self.flat[np.repeat(keep, self.lengths)], offsets)
        # token j of the new flat array is token (j - offsets[k]) of text idx[k]
        shift = np.repeat(self.offsets[:-1][idx] - offsets[:-1], lengths)
        flat = self.flat[np.arange(offsets[-1], dtype=np.int64) + shift].astype(np.int32)
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


@dataclasses.dataclass(frozen=True)
class HFEncoder:
    """The batched encoder of a Hugging Face fast tokenizer (no special tokens added: EOS is the
    pipeline's choice). Unlike a closure it pickles (the backend travels as its JSON), so a
    worker process can tokenize with it."""

    backend: Any  # tokenizers.Tokenizer

    def __call__(self, texts: list[str]) -> list[list[int]]:
        # encode_batch_fast (tokenizers >= 0.21): the same ids without the character offsets
        encode = getattr(self.backend, "encode_batch_fast", None) or self.backend.encode_batch
        return [e.ids for e in encode(texts, add_special_tokens=False)]


def _wrap(backend, eos_id: int, bos_id: int) -> Tokenizer:
    """A `tokenizers.Tokenizer` (the fast tokenizer inside transformers') as the pipeline's."""
    identity = hashlib.sha256(backend.to_str().encode()).hexdigest()

    def decode_batch(ids: list[list[int]]) -> list[str]:
        return backend.decode_batch([list(map(int, x)) for x in ids], skip_special_tokens=True)

    return Tokenizer(
        HFEncoder(backend),
        identity,
        int(eos_id),
        int(bos_id),
        decode_batch,
        int(backend.get_vocab_size()),
    )


def from_hf(tok) -> Tokenizer:
    """Wrap a transformers fast tokenizer."""
    return _wrap(tok.backend_tokenizer, tok.eos_token_id, tok.bos_token_id)


TOKENIZER_SUFFIXES = (".json", ".txt", ".model")  # a folder's files a tokenizer is made of


def _folder_key(folder: Path) -> str:
    """What decides the tokenizer a folder loads as: its tokenizer files (names and bytes; not
    the weights beside them) and the transformers version that converts them."""
    from importlib import metadata

    h = hashlib.sha256(f"{TOKENIZER_FORMAT}\0{metadata.version('transformers')}\0".encode())
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix in TOKENIZER_SUFFIXES:
            h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:40]


GPT2_FILES = {"vocab.json", "merges.txt", "tokenizer_config.json"}  # a plain GPT-2 folder's
GPT2_CONFIG = {"model_max_length", "bos_token", "eos_token", "unk_token", "tokenizer_class"}
EOT = "<|endoftext|>"


def _plain_gpt2(folder: Path) -> Tokenizer | None:
    """OpenAI's GPT-2 BPE files alone (vocab.json, merges.txt and a tokenizer_config.json of
    GPT2Tokenizer with only <|endoftext|> as special token), built with `tokenizers`: the very
    backend transformers 5 converts them to (the same `identity`, so the same cache keys and
    ids: tests/test_tokenize_pool.py), without importing transformers and torch, 1.6 s of a
    cold data phase on our CPU. Any other folder: None, for transformers to convert."""
    from importlib import metadata

    names = {f.name for f in folder.iterdir() if f.is_file() and f.suffix in TOKENIZER_SUFFIXES}
    if names != GPT2_FILES or int(metadata.version("transformers").split(".")[0]) < 5:
        return None
    try:  # a file that does not parse: transformers says what is wrong with it
        config = json.loads((folder / "tokenizer_config.json").read_text())
        backend = _gpt2_backend(folder)
    except Exception:
        return None
    if (
        not isinstance(config, dict)
        or set(config) - GPT2_CONFIG
        or config.get("tokenizer_class") not in ("GPT2Tokenizer", "GPT2TokenizerFast")
        or any(config.get(k, EOT) != EOT for k in ("bos_token", "eos_token", "unk_token"))
        or backend.token_to_id(EOT) is None
    ):
        return None
    from tokenizers import AddedToken

    backend.add_special_tokens([AddedToken(EOT, special=True, normalized=False)])
    eot = backend.token_to_id(EOT)
    return _wrap(backend, eot, eot)


def _gpt2_backend(folder: Path):
    """The byte-level BPE of a folder's vocab.json and merges.txt, set as transformers 5 sets
    GPT2Tokenizer's (its special tokens not yet added)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    bpe = models.BPE.from_file(
        str(folder / "vocab.json"),
        str(folder / "merges.txt"),
        continuing_subword_prefix="",
        end_of_word_suffix="",
    )
    backend = Tokenizer(bpe)
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.TemplateProcessing(single="$A", pair="$A:0 $B:1")
    return backend


def _from_folder(folder: Path, cache_dir: str) -> Tokenizer:
    """A tokenizer folder through transformers (a plain GPT-2 folder without it: `_plain_gpt2`),
    or, from `cache_dir`, the fast tokenizer made of the same files before: importing
    transformers (which imports torch) and converting the vocabulary took about 2 s of every
    run's data phase."""
    path = None
    if cache_dir:
        path = Path(cache_dir).expanduser() / f"tokenizer-{_folder_key(folder)}.json"
        if path.is_file():
            import tokenizers

            try:
                saved = json.loads(path.read_text())
                backend = tokenizers.Tokenizer.from_str(saved["backend"])
                return _wrap(backend, saved["eos_id"], saved["bos_id"])
            except Exception as e:  # a damaged file: made again below
                log.warning("cached tokenizer %s does not load (%s): made again", path, e)
    tok = _plain_gpt2(folder)
    if tok is None:
        import transformers

        tok = from_hf(transformers.AutoTokenizer.from_pretrained(str(folder)))
    if path is not None:
        saved = {"backend": tok.encode_batch.backend.to_str(), "eos_id": tok.eos_id}
        text = json.dumps({**saved, "bos_id": tok.bos_id}).encode()
        _write_atomic(path, lambda f: f.write(text))
    return tok


def _write_atomic(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """No half-written cache file: `write` fills a file beside `path`, then it is renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        write(f)
    os.replace(tmp, path)


def load_tokenizer(name: str, fallback: str = "", cache_dir: str = "") -> Tokenizer:
    """`name` as a folder, else from the HF cache, else the hub (offline, the hub is not asked:
    `network.offline`); when none has it, the `fallback` folder, said in one warning. A folder's
    tokenizer is kept in `cache_dir` (`_from_folder`; '' = not kept)."""
    if Path(name).expanduser().is_dir():
        return _from_folder(Path(name).expanduser(), cache_dir)
    if not network.is_hub_name(name):
        raise DataError(f"data.tokenizer={name}: no such folder")
    import transformers

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
        return _from_folder(Path(fallback).expanduser(), cache_dir)
    raise DataError(f"{why}, and data.tokenizer_fallback={fallback!r} is not a folder")


def cache_key(tokenizer: Tokenizer, texts: Sequence[str]) -> str:
    h = hashlib.sha256(f"{CACHE_FORMAT}\0{tokenizer.identity}\0{len(texts)}\0".encode())
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:40]


_WORKER_ENCODE: Callable[[list[str]], list[list[int]]] | None = None  # a pool worker's encoder


def _start_worker(encode: Callable[[list[str]], list[list[int]]]) -> None:
    """A pool worker: one tokenizer thread (the pool is the parallelism; threads of every worker
    on the same cores would only contend), and Ctrl-C left to the parent, which ends the pool."""
    global _WORKER_ENCODE
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER_ENCODE = encode


def _encode_in_worker(texts: list[str]) -> Tokens:
    return Tokens.from_lists(_WORKER_ENCODE(texts))


def pool_size(workers: int, batches: int, chars: int, min_chars: int, encode: Callable) -> int:
    """Worker processes for one tokenization (1: in this process, with the tokenizer's own
    threads): `workers` (0 = one per core), at most one per batch, and none for fewer than
    `min_chars` characters (a pool's start, about a second, would cost more than it saves) or
    an encoder that cannot travel to a process (only `HFEncoder` can)."""
    if workers < 0:
        raise DataError(f"data.tokenize_workers must be >= 0 (0: one per core), got {workers}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = workers or cores or 1
    if chars < min_chars or not isinstance(encode, HFEncoder):
        return 1
    return max(1, min(n, batches))


_POOLS: dict | None = None  # within `one_pool()`: the worker pools started, kept for reuse


@contextlib.contextmanager
def one_pool():
    """Within: the tokenizations with the same tokenizer share one worker pool, ended on leaving
    (starting one costs about a second: each process imports this package). Load all of a run's
    splits within it."""
    global _POOLS
    if _POOLS is not None:  # nested: the outer one keeps the pools
        yield
        return
    _POOLS = {}
    try:
        yield
    finally:
        pools, _POOLS = _POOLS, None
        for pool in pools.values():
            pool.shutdown(wait=True, cancel_futures=True)


def _mp_context() -> multiprocessing.context.BaseContext:
    """Not a fork of this process (it would copy JAX's threads): a forkserver, a fresh process
    that imports this module (with the package, JAX included) and the main script once, then
    forks each worker from itself; spawned workers each imported both anew, one per core at
    once. Spawn where there is no forkserver (Windows)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", __name__])
    return ctx


def _pool(workers: int, encode: Callable) -> tuple[ProcessPoolExecutor, bool]:
    """(a pool of `workers` processes with `encode`, whether the caller ends it): one kept by
    `one_pool`, else a new one."""
    key = (workers, id(encode))
    if _POOLS is not None and key in _POOLS:
        return _POOLS[key], False
    log.info("starting %d tokenizing processes", workers)
    pool = ProcessPoolExecutor(
        workers,
        mp_context=_mp_context(),
        initializer=_start_worker,
        initargs=(encode,),
    )
    if _POOLS is not None:
        _POOLS[key] = pool
    return pool, _POOLS is None


def _encode_batches(
    batches: list[list[str]], encode: Callable, workers: int, progress: bool
) -> list[Tokens]:
    """Each batch's tokens, in order: in this process, or in a pool of `workers` processes."""

    def shown(done):
        if not progress:
            return done
        from tqdm import tqdm

        return tqdm(done, desc="tokenizing", unit="batch", total=len(batches))

    if workers <= 1:
        return [Tokens.from_lists(encode(b)) for b in shown(batches)]
    pool, own = _pool(workers, encode)
    try:
        return list(shown(pool.map(_encode_in_worker, batches)))
    except BrokenProcessPool as e:
        raise DataError(
            f"a tokenizing worker process died ({e}); data.tokenize_workers=1 tokenizes in "
            "this process"
        ) from None
    finally:
        if own:
            pool.shutdown(wait=True, cancel_futures=True)


def tokenize_texts(
    texts: Sequence[str],
    tokenizer: Tokenizer,
    cache_dir: str = "",
    batch_size: int = 1000,
    progress: bool = False,
    workers: int = 1,
    pool_min_chars: int = 0,
) -> Tokens:
    """Token ids of every text (no EOS), from the cache under `cache_dir` when it has them ('' = no
    cache), else tokenized in batches of `batch_size` by `pool_size(workers, ...)` processes."""
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
    batches = [list(texts[s : s + batch_size]) for s in range(0, len(texts), batch_size)]
    chars = sum(map(len, texts))
    n = pool_size(workers, len(batches), chars, pool_min_chars, tokenizer.encode_batch)
    if n > 1:
        log.info("tokenizing %d texts in %d processes", len(texts), n)
    tokens = Tokens.join(_encode_batches(batches, tokenizer.encode_batch, n, progress))
    if path is not None:
        _write_atomic(path, lambda f: np.savez(f, flat=tokens.flat, offsets=tokens.offsets))
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
