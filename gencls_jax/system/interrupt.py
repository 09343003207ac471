"""Ctrl-C outside the training loop: stop within seconds, exit 130, one line.

Python turns SIGINT into a KeyboardInterrupt raised wherever the main thread happens to be. If
that is inside a garbage-collection callback (JAX registers one) or a `__del__`, Python prints
"Exception ignored ... KeyboardInterrupt" and carries on: a predict of 20,000 texts then went on
scoring, looking hung. So the handler here raises only where the exception will propagate; in a
callback or finaliser it leaves the signal pending (collections off meanwhile), and a watchdog
thread re-delivers it a moment later. The watchdog learns of the Ctrl-C at once (through
`signal.set_wakeup_fd`, even while the main thread is inside a long call into C, which runs no
Python handler until it returns), and if the program still runs `HARD_EXIT_S` later it ends it.
Once the exception has unwound the program (its `finally` blocks done: files closed, the lock
released), `exit_interrupted` ends the process at once: the interpreter's own shutdown would wait
for device computations still in flight. The files the program writes are replaced atomically
(`fileio`), so stopping at any point leaves each as it was or whole. While the training loop
runs, its own handler is installed (`training.hooks.StopOnSignal`: finish the step, save a
checkpoint, return) and the watchdog leaves it alone.
"""

from __future__ import annotations

import _thread
import gc
import os
import signal
import sys
import threading
import time

EXIT_STATUS = 128 + signal.SIGINT
MESSAGE = "interrupted (Ctrl-C): stopped; files it was writing are left as they were"
RETRY_S = 0.2  # how soon a Ctrl-C that came inside a callback or finaliser is re-delivered
HARD_EXIT_S = 5.0  # the program ends this long after the first Ctrl-C, whatever it is doing

_state = {"pending": False, "gc_was_on": False, "reported": False}


def _in_finaliser(frame) -> bool:
    """Is the main thread inside a gc callback or a `__del__`, where an exception is ignored?"""
    codes = {getattr(getattr(cb, "__func__", cb), "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        if frame.f_code in codes or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _handle(signum, frame) -> None:
    if _in_finaliser(frame):
        # Python code after a long call into C (a tokenizer's batch) often starts with a
        # collection, hence JAX's callback: no collection until the re-delivered signal
        _state["pending"] = True
        _state["gc_was_on"] = _state["gc_was_on"] or gc.isenabled()
        gc.disable()
        return
    _state["pending"] = False
    if _state["gc_was_on"]:
        gc.enable()
    raise KeyboardInterrupt


def _watchdog(wakeup: int) -> None:
    """Wait for a Ctrl-C that this module handles, then re-deliver a deferred one every
    `RETRY_S` and end the program `HARD_EXIT_S` after it."""
    while True:
        signums = os.read(wakeup, 64)  # one byte per signal, written by Python's C handler
        if signal.SIGINT in signums and signal.getsignal(signal.SIGINT) is _handle:
            break
    deadline = time.monotonic() + HARD_EXIT_S
    while time.monotonic() < deadline:
        time.sleep(RETRY_S)
        if _state["pending"]:
            _thread.interrupt_main(signal.SIGINT)  # runs `_handle` again in the main thread
    report()
    os._exit(EXIT_STATUS)


def install() -> None:
    """Handle Ctrl-C as described above (once, from the main thread, before any other work)."""
    signal.signal(signal.SIGINT, _handle)
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    threading.Thread(
        target=_watchdog, args=(read_end,), name="interrupt_watchdog", daemon=True
    ).start()


def report() -> None:
    """The one line an interrupted command prints on stderr (once), on a line of its own: when
    the watchdog ends the program, a progress bar may still be open, its line unfinished."""
    if not _state["reported"]:
        _state["reported"] = True
        print(("\n" if _open_progress_bar() else "") + MESSAGE, file=sys.stderr, flush=True)


def _open_progress_bar() -> bool:
    """Is a tqdm bar open (its line has no newline yet)? Only if tqdm was imported at all."""
    std = sys.modules.get("tqdm.std")
    return bool(std is not None and len(getattr(std.tqdm, "_instances", ())))


def exit_interrupted() -> None:
    """Report the interruption and end the process with status 130 (call it once the
    KeyboardInterrupt has unwound the program)."""
    report()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more to say there
            pass
    os._exit(EXIT_STATUS)
