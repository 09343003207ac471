"""Overlap host batch assembly with device compute: a background thread puts batches on the device."""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterable, Iterator

import jax

_DONE = object()


def prefetch_to_device(batches: Iterable[Any], size: int, sharding: Any = None) -> Iterator[Any]:
    """Yield `jax.device_put(batch, sharding)` for each batch, keeping up to `size` ready ahead.

    size <= 0 means no thread (plain device_put in the caller's thread). An exception in the
    producer is re-raised in the consumer; closing the generator stops the producer."""
    if size <= 0:
        for b in batches:
            yield jax.device_put(b, sharding)
        return
    q: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(item) -> bool:
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
                if not put((None, jax.device_put(b, sharding))):
                    return
        except BaseException as e:  # handed to the consumer
            put((e, None))
            return
        put((None, _DONE))

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
