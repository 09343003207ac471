"""A run's prediction files as the bench scripts read them: `predictions_<split>.jsonl` in a
workdir, or gzipped (`.jsonl.gz`) as the lease records under bench/results keep them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path


def predictions_file(workdir: Path, split: str) -> Path:
    """`predictions_<split>.jsonl`, else its `.gz` (whether or not that exists)."""
    plain = Path(workdir) / f"predictions_{split}.jsonl"
    return plain if plain.exists() else plain.with_name(plain.name + ".gz")


def records(path: str | Path) -> list[dict]:
    """The JSON lines of a file, gunzipped when it is gzip (by its first bytes, whatever its
    name)."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [json.loads(line) for line in data.splitlines() if line.strip()]
