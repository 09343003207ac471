"""TensorBoard scalars written by our own ~60 lines: an event file is a TFRecord stream of
`Event` protocol buffers, and a scalar needs five of their fields.

Why not a library: tensorboardX or torch.utils.tensorboard had to be imported by every run that
wanted curves, and on the H200 that import (torch with CUDA, in a thread of its own) held the
GIL over the training loop for ~2.5 s of every run's steps 50-150 (BUILD_NOTES "TensorBoard
without a writer library"). Encoding a scalar here takes microseconds and imports nothing, so
every run writes its curves, whatever is installed. `tests/test_outputs.py` reads the files
back with TensorBoard's own reader, which checks every record's CRC.

Record framing (TFRecord): uint64 length, uint32 masked CRC-32C of those 8 bytes, the data,
uint32 masked CRC-32C of the data; all little-endian. `Event`: wall_time = 1 (double), step = 2
(int64), file_version = 3 (string, the first record: "brain.Event:2"), summary = 5 (message);
`Summary`: value = 1 (repeated message); `Summary.Value`: tag = 1 (string), simple_value = 2
(float).
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

FILE_VERSION = "brain.Event:2"
_CRC32C_POLY = 0x82F63B78  # Castagnoli, reflected
_MASK_DELTA = 0xA282EAD8  # TFRecord's CRC mask


def _crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _CRC32C_POLY if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`, table-driven: records are tens of bytes."""
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def record(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC, the data, the data's masked CRC."""
    header = struct.pack("<Q", len(data))
    crc = struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))
    return header + crc


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | 0x80 if n else low)
        if not n:
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _message(field: int, payload: bytes) -> bytes:
    """A length-delimited field (a string or a nested message)."""
    return _key(field, 2) + _varint(len(payload)) + payload


def event(
    wall_time: float,
    step: int,
    scalars: dict[str, float] | None = None,
    file_version: str | None = None,
) -> bytes:
    """An `Event` (its serialized bytes) holding `scalars` {tag: value} at `step` (>= 0)."""
    if step < 0:
        raise ValueError(f"a TensorBoard step is >= 0, got {step}")
    out = _key(1, 1) + struct.pack("<d", wall_time) + _key(2, 0) + _varint(step)
    if file_version is not None:
        out += _message(3, file_version.encode())
    if scalars:
        values = b"".join(
            _message(1, _message(1, tag.encode()) + _key(2, 5) + struct.pack("<f", value))
            for tag, value in scalars.items()
        )
        out += _message(5, values)
    return out


class EventWriter:
    """An events file in `logdir` (a new one per writer: a resumed run adds its own), one
    record per `add` call, flushed at once so that TensorBoard sees a running job's curves."""

    def __init__(self, logdir: str | Path):
        logdir = Path(logdir)
        logdir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        self.path = logdir / f"events.out.tfevents.{int(now)}.{socket.gethostname()}"
        self.file = self.path.open("ab")
        self._write(event(now, 0, file_version=FILE_VERSION))

    def add(self, scalars: dict[str, float], step: int) -> None:
        self._write(event(time.time(), step, scalars))

    def _write(self, data: bytes) -> None:
        self.file.write(record(data))
        self.file.flush()

    def close(self) -> None:
        self.file.close()
