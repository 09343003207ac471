"""A compact vocabulary (`data.compact_vocab` = N > 0): the N most frequent token ids of the
training texts, every other id one shared 'other' id.

A scratch model on a CPU spends most of its time in the LM head (width x 50,257 logits per
token: a width-64 GPT-2 has 3.2M head parameters against 0.1M in a layer); with the training
set's 4,096 most frequent ids (~87% of IMDB's training tokens) the head is 12x smaller. Every
class model shares the same vocabulary, so log p(x|c) stays comparable across classes and
Bayes' rule is unchanged: the rare tokens are all read as one 'other' token in every class
model.

The kept ids are chosen from the training split only (never validation or test), most frequent
first (ties: the smaller id), EOS and BOS always kept; new id i is kept[i], id N is 'other'.
They are stored in the run's run_info.json (`compact_vocab_ids`) so eval, predict and explain
read texts exactly as training did. The tokenizer's identity changes with the kept ids, so a
tokenization cache never mixes the two vocabularies.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import Sequence

import numpy as np

from gencls_jax.data.sources import Dataset
from gencls_jax.data.tokenize import Tokenizer, Tokens

log = logging.getLogger(__name__)

OTHER_SHOWN = "\u2039other\u203a"  # how a decoded 'other' token reads ("‹other›")


def kept_ids(flat: np.ndarray, n: int, always: Sequence[int] = ()) -> np.ndarray:
    """The `n` ids to keep, in their new order: the ids in `always` first (in that order), then
    the most frequent of `flat` (ties: the smaller id). Fewer than `n` distinct ids: all of them
    (ids never seen are not kept)."""
    if n <= 0:
        raise ValueError(f"data.compact_vocab must be > 0, got {n}")
    flat = np.asarray(flat, np.int64)
    size = int(max(flat.max(initial=-1), *always, -1)) + 1
    counts = np.bincount(flat, minlength=size)
    forced = list(dict.fromkeys(int(a) for a in always))
    order = np.lexsort((np.arange(size), -counts))  # by count desc, then id asc
    rest = [int(i) for i in order if counts[i] > 0 and int(i) not in set(forced)]
    return np.asarray((forced + rest)[:n], np.int64)


@dataclasses.dataclass(frozen=True)
class CompactVocab:
    kept: np.ndarray  # [n] original ids; new id i is kept[i], new id n is 'other'

    @property
    def other_id(self) -> int:
        return len(self.kept)

    @property
    def vocab_size(self) -> int:
        return len(self.kept) + 1

    def lookup(self, size: int) -> np.ndarray:
        """[size] original id -> new id."""
        table = np.full(max(size, int(self.kept.max(initial=-1)) + 1), self.other_id, np.int32)
        table[self.kept] = np.arange(len(self.kept), dtype=np.int32)
        return table

    def map(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, np.int64)
        table = self.lookup(int(ids.max(initial=-1)) + 1)
        return table[ids].astype(np.int32)

    def tokenizer(self, tok: Tokenizer) -> Tokenizer:
        """`tok` whose ids are the compact ones (encode, EOS/BOS, vocabulary size, identity)."""
        inner_encode, inner_decode = tok.encode_batch, tok.decode_batch
        other = self.other_id
        kept = self.kept

        def encode_batch(texts: list[str]) -> list[list[int]]:
            return [self.map(np.asarray(t, np.int64)).tolist() for t in inner_encode(texts)]

        def decode_batch(ids: list[list[int]]) -> list[str]:
            out = []
            for seq in ids:  # runs of kept ids decode together; each 'other' shows as a marker
                text, run = [], []
                for i in map(int, seq):
                    if 0 <= i < other:
                        run.append(int(kept[i]))
                        continue
                    if run:
                        text.append(inner_decode([run])[0])
                        run = []
                    text.append(OTHER_SHOWN)
                if run:
                    text.append(inner_decode([run])[0])
                out.append("".join(text))
            return out

        digest = hashlib.sha256(self.kept.astype("<i8").tobytes()).hexdigest()[:16]
        return dataclasses.replace(
            tok,
            encode_batch=encode_batch,
            decode_batch=decode_batch if inner_decode is not None else None,
            eos_id=int(self.map(np.asarray([tok.eos_id]))[0]),
            bos_id=int(self.map(np.asarray([tok.bos_id]))[0]),
            vocab_size=self.vocab_size,
            identity=f"{tok.identity}/compact{len(self.kept)}-{digest}",
            compact_ids=tuple(int(i) for i in self.kept),
        )

    def dataset(self, ds: Dataset) -> Dataset:
        """`ds` with its tokens in the compact ids."""
        return dataclasses.replace(ds, tokens=Tokens(self.map(ds.tokens.flat), ds.tokens.offsets))


def from_training(
    train: Dataset, tok: Tokenizer, n: int, always: Sequence[int] = ()
) -> CompactVocab:
    """The compact vocabulary of a tokenized training split (logged: how much it covers); EOS,
    BOS and the ids in `always` (e.g. label prefixes) are kept whatever their counts."""
    kept = kept_ids(train.tokens.flat, n, always=(tok.eos_id, tok.bos_id, *always))
    vocab = CompactVocab(kept)
    counts = np.bincount(np.asarray(train.tokens.flat, np.int64))
    covered = counts[kept[kept < len(counts)]].sum() / max(counts.sum(), 1)
    log.info(
        "compact vocabulary: %d ids kept of %d (%.1f%% of the training tokens), the others -> "
        "id %d",
        len(kept),
        tok.vocab_size,
        100 * covered,
        vocab.other_id,
    )
    return vocab


def for_run(tok: Tokenizer, info: dict) -> Tokenizer:
    """The tokenizer a trained run reads texts with: `tok`, compacted if the run was."""
    kept = info.get("compact_vocab_ids")
    return CompactVocab(np.asarray(kept, np.int64)).tokenizer(tok) if kept else tok


def apply(
    ds: dict[str, Dataset],
    tok: Tokenizer,
    n: int,
    kept: Sequence[int] | None = None,
    always: Sequence[int] = (),
) -> tuple[Tokenizer, dict[str, Dataset], CompactVocab]:
    """(compact tokenizer, every split remapped, the vocabulary): from `kept` (a trained run's
    ids) or else from `ds['train']` (`always` kept too)."""
    vocab = CompactVocab(np.asarray(kept, np.int64)) if kept is not None else None
    if vocab is None:
        vocab = from_training(ds["train"], tok, n, always)
    return vocab.tokenizer(tok), {k: vocab.dataset(v) for k, v in ds.items()}, vocab
