"""One writing command per workdir: train (with its export), eval and generate hold its lock
(add_class holds its new workdir's).

Two of them in one workdir would interleave checkpoints, metrics and reports, so the second is
refused in one line naming the first (pid, host, command, since when). Predict and explain only
read a workdir: they take no lock and work while a training holds it.

How: an advisory `fcntl.flock` on `<workdir>/.lock`, whose content (pid, host, process start
time, mode, since when) only names the holder. A lock belongs to the holder's open file, so the
kernel drops it the moment the holder exits, however it ends (Ctrl-C, kill -9, a crash): a lock
left by a dead process cannot block the next run, with no judging by pid (pids are reused) or
age, and none of the races of deleting a stale lock file. A pid file taken with O_CREAT|O_EXCL
would need exactly that judging ("is that pid on that host still the process that wrote this?"),
which a process on another host cannot answer, so a node lost on a cluster would leave a lock
someone must delete by hand. flock works across hosts on the shared file systems a multi-host
run uses (NFS, where Linux maps it to NFS byte-range locks, GPFS, CephFS, Lustre mounted with
`flock`); where a file system has no locks at all, the command runs unlocked, with a warning.
The holder removes the file when done (so a finished workdir holds no lock file); a process
that finds the file gone after locking it (a holder just finished) starts over.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
from pathlib import Path

from absl import logging

from gencls_jax.errors import RunError

LOCK_FILE = ".lock"
WRITING_MODES = ("train", "eval", "generate")  # the commands that take the lock


class WorkdirBusy(RuntimeError):
    """Another command holds the workdir's lock; the message names it."""


def process_start_time(pid: int) -> str:
    """When process `pid` started, as the kernel counts it (Linux: clock ticks since boot,
    /proc/<pid>/stat field 22), '' where unknown. With the pid it names one process for good."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # fields after the command name start at 3


def describe(holder: dict) -> str:
    """'pid 123 on host h (--mode=train since 2025-01-01T10:00:00)' from a lock file's content."""
    if not holder:
        return "another process (it has not written its name yet)"
    mode = f"--mode={holder['mode']} " if holder.get("mode") else ""
    return (
        f"pid {holder.get('pid')} on host {holder.get('host')} ({mode}since {holder.get('since')})"
    )


def read_holder(workdir: str | Path) -> dict:
    """The lock file's content ({} if none or not written yet)."""
    try:
        return json.loads((Path(workdir) / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return {}


class WorkdirLock:
    """`with WorkdirLock(workdir, mode):` holds the workdir's lock for the block (raises
    WorkdirBusy, naming the holder, if another process holds it). The workdir is created if
    missing, and removed again on release if the command left it empty."""

    def __init__(self, workdir: str | Path, mode: str = ""):
        self.workdir, self.mode = Path(workdir), mode
        self.path = self.workdir / LOCK_FILE
        self._fd: int | None = None
        self._made_folder = False

    def acquire(self) -> None:
        self._made_folder = not self.workdir.exists()
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file of that name, a folder we may not write to
            raise RunError(
                f"{self.workdir}: cannot make the workdir there ({e.strerror})"
            ) from None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                    raise WorkdirBusy(
                        f"{self.workdir} is in use by {describe(read_holder(self.workdir))}: "
                        "wait for it to finish, or use another --workdir"
                    ) from None
                logging.warning(
                    "%s: this file system cannot lock files (%s): running without a lock, so "
                    "another command in this workdir at the same time would not be refused",
                    self.path,
                    e.strerror,
                )
                return
            try:  # the holder before us may have removed the file after we opened it
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        pid = os.getpid()
        holder = dict(
            pid=pid,
            host=socket.gethostname(),
            start_time=process_start_time(pid),
            mode=self.mode,
            since=datetime.datetime.now().isoformat(timespec="seconds"),
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        os.fsync(fd)

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.unlink(self.path)  # while still locked: nobody locks a file we then delete
            except FileNotFoundError:
                pass
            os.close(self._fd)
            self._fd = None
        if self._made_folder:
            try:
                self.workdir.rmdir()  # only if the command left it empty
            except OSError:
                pass

    def __enter__(self) -> "WorkdirLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
