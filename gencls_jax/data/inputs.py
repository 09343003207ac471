"""Texts to classify, from users' files or stdin: jsonl, csv or txt (one text per line).

Read by the same readers as training data (`data.sources`), so a bad line gets the same one-line
error; with `skip_bad_lines` bad lines are reported and left out instead. Predict and explain
read their `--input` here.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import functools
import io
import math
import sys
import tempfile
from pathlib import Path
from typing import IO, Callable, Sequence

from gencls_jax.data import sources
from gencls_jax.data.clean import clean_texts
from gencls_jax.data.sources import RawSplit
from gencls_jax.errors import DataError

FORMATS = ("auto", "jsonl", "csv", "txt")
STDIN = "-"
# skip_bad_lines re-reads the input in pieces of at least this many lines (one re-read of a
# piece per bad line in it), so a few bad lines in a large file cost a few small re-reads
SKIP_PIECE_LINES = 1000


@dataclasses.dataclass(frozen=True)
class Inputs:
    """Texts to classify, in input order; `skipped` holds the one-line error of each bad line
    left out (`skip_bad_lines`)."""

    texts: list[str]
    ids: list[str]
    where: list[str]  # 'file:row' of each text, for errors
    skipped: list[str]
    source: str = "-"  # where they came from: a file, '-' (stdin) or '--text'


def read_txt(path: str | Path) -> RawSplit:
    """One text per line (blank lines skipped, rows numbered from 1, a trailing CR dropped)."""
    data = sources._read_bytes(path)
    texts, ids, where = [], [], []
    for row, line in enumerate(data.split(b"\n"), start=1):
        line = line.removesuffix(b"\r")
        if not line.strip():
            continue
        w = f"{path}:{row}"
        texts.append(sources._decode(line, w))
        ids.append(f"{Path(path).name}:{row}")
        where.append(w)
    return RawSplit(
        texts,
        [None] * len(texts),
        ids,
        where,
        str(path),
        sources.file_source(path),
    )


def input_format(name: str, data: bytes | None, fmt: str) -> str:
    """jsonl | csv | txt: `fmt` unless 'auto'; then by the file name (.gz ignored), or for stdin
    (`data` given) jsonl if the first non-blank line starts with '{', else txt."""
    if fmt not in FORMATS:
        raise DataError(f"--input_format must be one of {FORMATS}, got {fmt!r}")
    if fmt != "auto":
        return fmt
    if data is not None:
        first = next((ln.strip() for ln in data.split(b"\n") if ln.strip()), b"")
        return "jsonl" if first.startswith(b"{") else "txt"
    kind = sources.format_by_name(name)
    if kind:
        return kind
    raise DataError(
        f"{name}: cannot tell its format from the name: pass --input_format=jsonl|csv|txt"
    )


def read_inputs(
    path: str,
    fmt: str = "auto",
    *,
    text_field: str = "text",
    id_field: str = "id",
    label_field: str = "label",
    skip_bad_lines: bool = False,
    clean_html: bool = False,
    stdin: IO[bytes] | None = None,
) -> Inputs:
    """The texts of `path` ('-' or '': stdin). A bad line (invalid JSON or UTF-8, a missing text
    field, a text left empty by cleaning) is a DataError naming the file and row, as in training
    data; with `skip_bad_lines` each is left out and its error kept in `Inputs.skipped`."""
    data = None
    if path in ("", STDIN):
        data = (stdin or sys.stdin.buffer).read()
        if not data.strip():
            raise DataError("<stdin>: no texts (empty input)")
    kind = input_format(path or STDIN, data, fmt)
    fields = dict(text_field=text_field, label_field=label_field, id_field=id_field, labeled=False)
    readers: dict[str, Callable[[str], RawSplit]] = {
        "jsonl": functools.partial(sources.read_jsonl, **fields),
        "csv": functools.partial(sources.read_csv, **fields),
        "txt": read_txt,
    }
    read = readers[kind]
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gencls_predict_") as tmp:
        if data is not None:  # the readers read files: stdin goes through one
            file, shown = str(Path(tmp) / "stdin"), "<stdin>"
            Path(file).write_bytes(data)
        else:
            file = shown = path  # as given: errors name it as the training data's do
        try:
            parts = [_renamed(read(file), file, shown)]
        except DataError as e:
            if not skip_bad_lines or _row_of(e, file) is None:
                raise DataError(str(e).replace(file, shown)) from None
            if data is None:
                data = sources._read_bytes(file)
            piece_file = str(Path(tmp) / Path(file).name)  # same name: same default ids
            parts, skipped = _read_skipping(read, kind, data, piece_file, shown)
    texts = [t for p in parts for t in p.texts]
    ids = [i for p in parts for i in p.ids]
    where = [w for p in parts for w in p.where]
    keep = []
    for i, (t, w) in enumerate(zip(texts, where)):  # texts that cleaning would leave empty
        try:
            clean_texts([t], [w], clean_html)
            keep.append(i)
        except DataError as e:
            if not skip_bad_lines:
                raise
            skipped.append(str(e))
    if not keep:
        raise DataError(f"{shown}: no texts to classify ({len(skipped)} bad lines skipped)")
    return Inputs(
        [texts[i] for i in keep],
        [ids[i] for i in keep],
        [where[i] for i in keep],
        skipped,
        path or STDIN,
    )


def _row_of(e: DataError, file: str) -> int | None:
    """The row a reader's error names (`file:row: ...`), or None for an error of the whole file."""
    head = f"{file}:"
    msg = str(e)
    if not msg.startswith(head):
        return None
    row = msg[len(head) :].split(":", 1)[0]
    return int(row) if row.isdigit() else None


def _renamed(raw: RawSplit, file: str, shown: str) -> RawSplit:
    return dataclasses.replace(raw, where=[w.replace(file, shown, 1) for w in raw.where])


def _units(kind: str, data: bytes, lines: list[bytes]) -> list[tuple[int, int]]:
    """(first, last) line of each record: a line for jsonl and txt; a csv record may span lines
    (quoted newlines), and its first record is the header."""
    if kind != "csv":
        return [(r, r) for r in range(1, len(lines) + 1)]
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    units, last = [], 0
    for _ in reader:
        units.append((last + 1, reader.line_num))
        last = reader.line_num
    return units


def _compose(lines: list[bytes], units: Sequence[tuple[int, int]]) -> bytes:
    """The file with only `units`' lines kept, every other line blank (rows keep their numbers)."""
    parts: list[bytes] = []
    for a, b in units:
        parts.extend([b""] * (a - 1 - len(parts)))
        parts.extend(lines[a - 1 : b])
    return b"\n".join(parts)


def _read_skipping(
    read: Callable[[str], RawSplit], kind: str, data: bytes, file: str, shown: str
) -> tuple[list[RawSplit], list[str]]:
    """Read `data` with the reader `read`, piece by piece, leaving out each record whose row a
    DataError names (the reader's message kept, the file shown as `shown`); the reader sees
    only one piece at a time (other lines blank, so rows keep their numbers)."""
    lines = data.split(b"\n")
    units = _units(kind, data, lines)
    header = units[:1] if kind == "csv" else []
    body = units[len(header) :]
    step = max(SKIP_PIECE_LINES, math.ceil(len(body) / 16))
    parts: list[RawSplit] = []
    skipped: list[str] = []
    for s in range(0, len(body), step):
        piece = list(body[s : s + step])
        while piece:
            if not b"".join(b"".join(lines[a - 1 : b]) for a, b in piece).strip():
                break  # only blank lines left
            Path(file).write_bytes(_compose(lines, header + piece))
            try:
                parts.append(_renamed(read(file), file, shown))
                break
            except DataError as e:
                row = _row_of(e, file)
                at = bisect.bisect_left([b for _, b in piece], row) if row is not None else -1
                if row is None or at >= len(piece) or piece[at][0] > row:
                    raise DataError(str(e).replace(file, shown)) from None
                skipped.append(str(e).replace(file, shown))
                del piece[at]
    return parts, skipped
