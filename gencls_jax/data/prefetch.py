"""Overlap host batch assembly with device compute: a background thread puts batches on the
device. The one prefetcher of training and scoring batches."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator

import jax

_DONE = object()


def prefetch_to_device(
    batches: Iterable[Any], size: int, put: Callable[[Any], Any] = jax.device_put
) -> Iterator[Any]:
    """Yield `put(batch)` (default: `jax.device_put`) for each batch, keeping up to `size` ready
    ahead: batch assembly on the host (iterating `batches`) and the transfer run in a thread.

    size <= 0 means no thread (`put` in the caller's thread). An exception in the producer
    (e.g. a bad batch refused by `put`) is re-raised in the consumer; closing the generator
    stops the producer."""
    if size <= 0:
        for b in batches:
            yield put(b)
        return
    q: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def send(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for b in batches:
                if not send((None, put(b))):
                    return
        except BaseException as e:  # handed to the consumer
            send((e, None))
            return
        send((None, _DONE))

    thread = threading.Thread(target=produce, name="prefetch_to_device", daemon=True)
    thread.start()
    try:
        while True:
            err, item = q.get()
            if err is not None:
                raise err
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
