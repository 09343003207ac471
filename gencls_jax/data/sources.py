"""Reading labelled texts from tfds, jsonl, csv or the Stanford aclImdb layout into one record.

Every reader returns raw labels (ints or strings, as the file has them); `resolve_labels`
maps them to class indices once the label names are known, so train and test share one
mapping. Every bad input raises `DataError` with one line naming the file and row.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gzip
import hashlib
import importlib.util
import io
import json
import logging
import os
import re
import sys
import tarfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gencls_jax.errors import DataError
from gencls_jax.system import network

log = logging.getLogger(__name__)

UNLABELED = -1  # label of texts without one (IMDB's unsup split)


@dataclasses.dataclass(frozen=True)
class RawSplit:
    """Texts as read, labels not yet mapped to indices."""

    texts: list[str]
    raw_labels: list[Any]  # int | str | None (None = unlabeled)
    ids: list[str]
    where: list[str]  # 'file:row' of each text, for error messages
    identity: str  # what was read, as messages name it: the file's path, or tfds name/split
    # provenance: file path + sha256, or the tfds build
    source: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A split ready for training or scoring. `tokens` is filled in by
    `pipeline.tokenize_dataset`."""

    texts: list[str]
    labels: np.ndarray  # int32 [N], class index, UNLABELED for unlabeled texts
    ids: list[str]
    origin: np.ndarray  # str [N]: 'real' | 'synthetic'
    label_names: tuple[str, ...]
    tokens: Any = None  # tokenize.Tokens or None
    sources: tuple[dict, ...] = ()  # where the texts were read from (RawSplit.source of each part)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def subset(self, idx: Sequence[int] | np.ndarray) -> "Dataset":
        idx = np.asarray(idx, np.int64)
        return Dataset(
            texts=[self.texts[i] for i in idx],
            labels=self.labels[idx],
            ids=[self.ids[i] for i in idx],
            origin=self.origin[idx],
            label_names=self.label_names,
            tokens=None if self.tokens is None else self.tokens.take(idx),
            sources=self.sources,
        )

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels[self.labels >= 0], minlength=self.num_classes)


def concat(a: Dataset, b: Dataset) -> Dataset:
    """Two datasets with the same label names, one after the other."""
    if a.label_names != b.label_names:
        raise DataError(
            f"cannot merge datasets with label names {a.label_names} and {b.label_names}"
        )
    if (a.tokens is None) != (b.tokens is None):
        raise DataError("cannot merge a tokenized dataset with an untokenized one")
    tokens = None if a.tokens is None else a.tokens.concat(b.tokens)
    return Dataset(
        a.texts + b.texts,
        np.concatenate([a.labels, b.labels]),
        a.ids + b.ids,
        np.concatenate([a.origin, b.origin]),
        a.label_names,
        tokens,
        a.sources + b.sources,
    )


# --- file helpers ------------------------------------------------------------------------


def _read_bytes(path: str | os.PathLike) -> bytes:
    """File contents, gunzipped when the file starts with the gzip magic (whatever its name)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    data = p.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise DataError(f"{p}: corrupt gzip file ({e})") from None
    if not data.strip():
        raise DataError(f"{p}: file is empty")
    return data


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: invalid UTF-8 at byte {e.start}") from None


# File formats by name (a .gz suffix aside): how every reader of a local file tells them apart.
FORMAT_SUFFIXES = {
    "jsonl": (".jsonl", ".json", ".ndjson"),
    "csv": (".csv",),
    "txt": (".txt", ".text"),
}


def format_by_name(name: str | os.PathLike) -> str | None:
    """'jsonl' | 'csv' | 'txt' by the file's name (.gz ignored), None when the name does not
    say."""
    base = str(name).lower().removesuffix(".gz")
    return next((kind for kind, ends in FORMAT_SUFFIXES.items() if base.endswith(ends)), None)


def file_source(path: str | os.PathLike) -> dict:
    """Provenance of a data file: its absolute path and the sha256 of its bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"path": str(Path(path).resolve()), "sha256": h.hexdigest()}


def read_jsonl(
    path: str | os.PathLike, text_field: str, label_field: str, id_field: str, labeled: bool = True
) -> RawSplit:
    """One JSON object per line; blank lines are skipped; rows are numbered from 1.
    labeled=False (unsup texts): a missing label is fine and reads as None."""
    data = _read_bytes(path)
    name = Path(path).name  # once: a Path per row was a third of reading IMDB
    texts, labels, ids, where = [], [], [], []
    for row, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        w = f"{path}:{row}"
        try:
            obj = json.loads(_decode(line, w))
        except json.JSONDecodeError as e:
            raise DataError(f"{w}: invalid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{w}: expected a JSON object, got {type(obj).__name__}")
        texts.append(_text_of(obj, text_field, w))
        labels.append(
            _label_of(obj, label_field, w) if labeled or obj.get(label_field) is not None else None
        )
        ids.append(str(obj[id_field]) if id_field in obj else f"{name}:{row}")
        where.append(w)
    return RawSplit(texts, labels, ids, where, str(path), file_source(path))


def read_csv(
    path: str | os.PathLike, text_field: str, label_field: str, id_field: str, labeled: bool = True
) -> RawSplit:
    """A CSV file with a header row; rows are numbered by their line in the file (labeled: see
    read_jsonl)."""
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: invalid UTF-8 at byte {e.start}") from None
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    texts, labels, ids, where = [], [], [], []
    for obj in reader:
        row = reader.line_num
        w = f"{path}:{row}"
        if None in obj:
            raise DataError(f"{w}: more values than header columns")
        texts.append(_text_of(obj, text_field, w))
        labels.append(
            _label_of(obj, label_field, w) if labeled or obj.get(label_field) is not None else None
        )
        ids.append(str(obj.get(id_field) or f"{Path(path).name}:{row}"))
        where.append(w)
    if not texts:
        raise DataError(f"{path}: no data rows after the header")
    return RawSplit(texts, labels, ids, where, str(path), file_source(path))


def _text_of(obj: dict, field: str, where: str) -> str:
    if field not in obj or obj[field] is None:
        raise DataError(f"{where}: missing field {field!r}")
    if not isinstance(obj[field], str):
        raise DataError(f"{where}: field {field!r} is a {type(obj[field]).__name__}, not a string")
    return obj[field]


def _label_of(obj: dict, field: str, where: str) -> Any:
    if obj.get(field) is None:  # csv: a short row gives None
        raise DataError(f"{where}: missing field {field!r}")
    v = obj[field]
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise DataError(f"{where}: label {v!r} is neither an int nor a string")
    return v


_ACL_NAME = re.compile(r"^(\d+)_(\d+)\.txt$")


def read_aclimdb(path: str | os.PathLike, split: str) -> RawSplit:
    """The Stanford layout aclImdb/{train,test}/{neg,pos}/{id}_{rating}.txt, train/unsup for
    'unsup'.

    `path` is the aclImdb folder (or its parent) or the aclImdb_v1.tar.gz tarball. Texts come
    sorted by (label, id) like the jsonl export; labels are the folder names ('neg'/'pos')."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    parts = [("train", "unsup")] if split == "unsup" else [(split, "neg"), (split, "pos")]
    found: list[tuple[str, int, str, bytes]] = []  # (label, id, where, bytes)
    if p.is_dir():
        root = p / "aclImdb" if (p / "aclImdb").is_dir() else p
        for sub, label in parts:
            folder = root / sub / label
            if not folder.is_dir():
                raise DataError(f"{folder}: folder not found (expected the aclImdb layout)")
            for f in folder.iterdir():
                m = _ACL_NAME.match(f.name)
                if m:
                    found.append((label, int(m.group(1)), str(f), f.read_bytes()))
    else:
        try:
            with tarfile.open(p) as tar:
                for member in tar:
                    bits = member.name.split("/")
                    if not member.isfile() or len(bits) < 4 or (bits[-3], bits[-2]) not in parts:
                        continue
                    m = _ACL_NAME.match(bits[-1])
                    if m:
                        found.append(
                            (
                                bits[-2],
                                int(m.group(1)),
                                f"{p}:{member.name}",
                                tar.extractfile(member).read(),
                            )
                        )
        except tarfile.TarError as e:
            raise DataError(f"{p}: not a readable tar file ({e})") from None
    if not found:
        raise DataError(
            f"{p}: no {split} reviews found (expected aclImdb/{split}/{{neg,pos}}/ID_RATING.txt)"
        )
    found.sort(key=lambda r: (r[0], r[1]))
    texts = [_decode(b, w) for _, _, w, b in found]
    labels = [None if label == "unsup" else label for label, _, _, _ in found]
    ids = [f"{split}/{label}/{i}" for label, i, _, _ in found]
    return RawSplit(
        texts,
        labels,
        ids,
        [w for _, _, w, _ in found],
        f"aclimdb:{p.resolve()}:{split}",
        {"aclimdb": str(p.resolve()), "split": split},
    )


def read_tfds(
    name: str, split: str, data_dir: str, text_field: str, label_field: str
) -> tuple[RawSplit, tuple[str, ...]]:
    """The split from tfds's numpy data source (array_record files, read without tensorflow) as
    a RawSplit, plus the label names from the dataset info. A dataset not prepared yet is
    downloaded and prepared by tfds, which needs tensorflow (the `[tfds]` extra) and the network
    (`network.offline`). tfds prints its progress on stdout: it goes to stderr here."""
    where = f"tfds {name}/{split}"
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(f"{where}: tensorflow_datasets does not import ({e})") from None
    if importlib.util.find_spec("tensorflow") is None:
        cannot_prepare = "preparing it needs tensorflow: pip install 'gencls_jax[tfds]'"
    else:
        offline = network.offline()
        cannot_prepare = f"offline: {offline}" if offline else ""
    builder = None
    with contextlib.redirect_stdout(sys.stderr), _absl_errors_only():
        try:
            builder = tfds.builder(name, data_dir=data_dir or None, file_format="array_record")
            if not cannot_prepare:
                builder.download_and_prepare()
            examples = list(builder.as_data_source(split=split))
        except Exception as e:  # tfds raises many kinds (unknown name, network, missing data)
            if builder is not None and cannot_prepare and not builder.is_prepared():
                raise DataError(
                    f"{where}: not prepared in {builder.data_dir} ({cannot_prepare})"
                ) from None
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            hint = (
                " (prepared as tfrecord: `tfds convert_format --out_file_format=array_record`)"
                if "FileFormat.TFRECORD" in msg
                else ""
            )
            raise DataError(f"{where}: could not load ({type(e).__name__}: {msg}){hint}") from None
    feature = builder.info.features[label_field]
    names = tuple(getattr(feature, "names", ()) or ())
    texts = [_tfds_text(ex[text_field]) for ex in examples]
    raw = [int(ex[label_field]) for ex in examples]
    labels = [None if v < 0 else v for v in raw]
    ids = [f"{split}:{i}" for i in range(len(texts))]
    return RawSplit(
        texts,
        labels,
        ids,
        [f"{where}:{i}" for i in range(len(texts))],
        where,
        {"tfds": name, "version": str(builder.info.version), "split": split},
    ), names


@contextlib.contextmanager
def _absl_errors_only():
    """tfds warns about each folder it looks into (through absl's logger): noise next to the
    one line that says the data source falls back."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _tfds_text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


# --- labels ------------------------------------------------------------------------------


def _as_int(v: Any) -> int | None:
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()):
        return int(v)
    return None


def label_kind(raw: RawSplit) -> str | None:
    """'index' when every label is an integer (IMDB's 0/1), 'name' when they are names, None
    when the split has no labels."""
    labels = [v for v in raw.raw_labels if v is not None]
    if not labels:
        return None
    return "index" if all(_as_int(v) is not None for v in labels) else "name"


def infer_label_names(raw: RawSplit) -> tuple[str, ...]:
    """Label names from the training data: 0..max for integer labels, else the sorted strings."""
    labels = [v for v in raw.raw_labels if v is not None]
    if not labels:
        raise DataError(f"{raw.identity}: no labelled rows to take label names from")
    ints = [_as_int(v) for v in labels]
    if all(i is not None for i in ints):
        if min(ints) < 0:
            raise DataError(f"{raw.identity}: negative label {min(ints)}")
        return tuple(str(i) for i in range(max(ints) + 1))
    return tuple(sorted({str(v) for v in labels}))


def resolve_labels(raw: RawSplit, label_names: Sequence[str], names_from: str = "") -> np.ndarray:
    """Raw labels -> int32 class indices: a label is a name in `label_names` or an index into it.
    `names_from` says where the names came from, for the error of an unknown label."""
    index = {n: i for i, n in enumerate(label_names)}
    out = np.empty(len(raw.raw_labels), np.int32)
    for j, v in enumerate(raw.raw_labels):
        if v is None:
            out[j] = UNLABELED
        elif isinstance(v, str) and v in index:
            out[j] = index[v]
        elif (i := _as_int(v)) is not None and 0 <= i < len(label_names):
            out[j] = i
        else:
            raise DataError(
                f"{raw.where[j]}: unknown label {v!r}; label names are {tuple(label_names)}"
                + (f" ({names_from})" if names_from else "")
            )
    return out


def check_every_class_present(ds: Dataset, what: str, min_classes: int = 2) -> None:
    """A class with no training examples cannot get a model, and a classifier needs two classes
    (`min_classes`; 1 where labels are ignored): refuse instead of training garbage."""
    if ds.num_classes < min_classes:
        raise DataError(
            f"{what}: every text has the label {ds.label_names[0]!r}: "
            f"a classifier needs at least {min_classes} classes"
        )
    counts = ds.class_counts()
    empty = [ds.label_names[k] for k in range(ds.num_classes) if counts[k] == 0]
    if empty:
        raise DataError(
            f"{what}: label(s) {empty} have no examples "
            f"(counts {dict(zip(ds.label_names, counts.tolist()))})"
        )


def to_dataset(
    raw: RawSplit, label_names: Sequence[str], origin: str = "real", names_from: str = ""
) -> Dataset:
    """A RawSplit with labels resolved against `label_names` (`names_from`: resolve_labels)."""
    labels = resolve_labels(raw, label_names, names_from)
    return Dataset(
        list(raw.texts),
        labels,
        list(raw.ids),
        np.full(len(raw.texts), origin),
        tuple(label_names),
        sources=(raw.source,),
    )
