"""Files that an interruption (Ctrl-C, a kill, a crash) cannot leave half-written.

Three kinds of file, three rules:
- a file the program replaces (predictions, reports, metrics.json, an explain page) is written
  to a temporary name beside it and renamed over it (`atomic_open`, `write_text`): a reader
  sees the old file or the new one, never a torn one;
- a folder it replaces (an export, an `eval_*` folder) is built under a temporary name and
  swapped in (`replaced_folder`);
- an append-only log (metrics.jsonl, history.jsonl) gets whole lines, each in one write
  (`append_line`); `read_jsonl` ignores a torn last line (a process killed mid-write).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import IO, Iterator

from absl import logging


def _temp_beside(path: Path, suffix: str) -> Path:
    """A new name in `path`'s folder (hidden, unique). The temporary files and folders are made
    with os.open / os.mkdir, so the umask gives them the permissions a plain write would (the
    tempfile module's are private to the user: a shared run's reports would be unreadable)."""
    return path.parent / f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}"


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: some file systems cannot open folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """A file opened for writing at a temporary name beside `path`, renamed over `path` when the
    block ends without an exception (removed if it raises): `path` holds the old content or the
    new, whole. `mode` is 'w' or 'wb'. The folder is created if missing."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', got {mode!r}")
    path = Path(path)
    if path.is_dir():  # fail now, not at the rename after all the work
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(path, ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    with atomic_open(path, "w", encoding) as f:
        f.write(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


@contextlib.contextmanager
def replaced_folder(path: str | Path) -> Iterator[Path]:
    """A fresh temporary folder beside `path` to fill; when the block ends without an exception
    it takes `path`'s place (the old folder, if any, is removed); if it raises, it is removed
    and `path` is untouched. The swap is two renames; an interruption between them puts the
    old folder back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(path, ".tmp")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = _temp_beside(path, ".old") if path.exists() else None
    try:
        if old is not None:
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        if old is not None and not path.exists():
            os.replace(old, path)
        raise
    finally:
        for leftover in (tmp, old):  # whatever did not end up at `path`
            if leftover is not None:
                shutil.rmtree(leftover, ignore_errors=True)
    _fsync_folder(path.parent)


def append_line(path: str | Path, line: str) -> None:
    """Append one line to a log in a single write, flushed to disk. A torn last line (a writer
    killed mid-line) is ended first, so the new line stays whole and readable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a jsonl log ([] if it does not exist). A last line that does not parse
    is a write cut short and is ignored; a damaged line before it (a torn line that a later
    append ended) is skipped with a warning."""
    path = Path(path)
    if not path.exists():
        return []
    lines = [(i, ln) for i, ln in enumerate(path.read_bytes().split(b"\n"), 1) if ln.strip()]
    out = []
    for k, (row, line) in enumerate(lines):
        try:
            out.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            if k + 1 < len(lines):
                logging.warning("%s:%d: skipped a damaged line (a write cut short)", path, row)
    return out
