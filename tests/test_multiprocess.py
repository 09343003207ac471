"""JAX's multi-controller runtime with real processes on this CPU (gloo collectives): two
processes of one device each train and evaluate the tiny config exactly as one process with two
emulated devices; each feeds only its own rows; only process 0 writes; a killed process makes
the other fail within the heartbeat bound; K class models split over a 'class' mesh axis equal
one device."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import IMDB_DIR, REPO, TOKENIZER_DIR, in_parallel

pytestmark = pytest.mark.skipif(
    not (IMDB_DIR / "train.jsonl.gz").exists() or not TOKENIZER_DIR.exists(),
    reason="needs ../shared/data",
)

SMALL = [
    "--config.data.per_class_limit=32",
    "--config.data.val_size=16",
    "--config.eval.test_per_class=16",
    "--config.eval.sample_per_class=8",
    "--config.eval.train_sample_per_class=8",
    "--config.data.tokenizer=" + str(TOKENIZER_DIR),
    "--config.data.train_path=" + str(IMDB_DIR / "train.jsonl.gz"),
    "--config.data.test_path=" + str(IMDB_DIR / "test.jsonl.gz"),
    "--config.train.log_every=1",
    "--config.progress_bars=False",
    "--config.compile_cache_dir=",
    "--config.model.dropout=0.0",
    "--config.data.compact_vocab=256",  # not the subject; the 50,257-id head is most of a step
]

# Run run.py with a hook that records, per process, a fingerprint of every row it fed.
HOOKED = """
import json, os, runpy, sys
import numpy as np
sys.path.insert(0, {repo!r})
from gencls_jax.system import sharding
log, real = os.environ["FED_ROWS_LOG"], sharding.local_rows
def local_rows(name, x):
    out = real(name, x)
    if name == "inputs":  # [class or slice][row]: one fingerprint per row
        lead = out.reshape(-1, *out.shape[-2:])
        fp = [[int(r.astype(np.int64) @ np.arange(1, r.size + 1)) for r in rows] for rows in lead]
        with open(log, "a") as f:
            f.write(json.dumps(fp) + "\\n")
    return out
sharding.local_rows = local_rows
sys.argv = ["run.py"] + sys.argv[1:]
runpy.run_path({run!r}, run_name="__main__")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(args, env_extra=None, log=None):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env_extra or {})}
    code = HOOKED.format(repo=str(REPO), run=str(REPO / "run.py"))
    cmd = [sys.executable, "-c", code, "--config=" + str(REPO / "configs" / "tiny.py"), *args]
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def train_losses(workdir: Path) -> list[float]:
    return [
        json.loads(line)["train_loss"]
        for line in open(workdir / "metrics.jsonl")
        if json.loads(line)["kind"] == "train"
    ]


def fingerprints(path: Path) -> list[list[int]]:
    return [json.loads(line) for line in open(path)] if path.exists() else []


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("mp")
    port = free_port()
    two = [
        launch(
            [
                f"--workdir={d / 'two_procs'}",
                f"--coordinator_address=localhost:{port}",
                "--num_processes=2",
                f"--process_id={i}",
                *SMALL,
            ],
            {"FED_ROWS_LOG": str(d / f"fed_{i}.jsonl")},
        )
        for i in range(2)
    ]
    one = launch(
        [f"--workdir={d / 'one_proc'}", *SMALL],
        {
            "FED_ROWS_LOG": str(d / "fed_one.jsonl"),
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        },
    )
    for p in [*two, one]:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
    return d


def test_two_processes_equal_one_process_with_two_devices(runs):
    a, b = runs / "two_procs", runs / "one_proc"
    np.testing.assert_allclose(train_losses(a), train_losses(b), rtol=1e-6)
    assert (
        len(train_losses(a)) == json.loads((a / "metrics.json").read_text())["steps"]
    )  # one record per step
    for split in ("val", "test"):
        pa = [json.loads(line) for line in open(a / f"predictions_{split}.jsonl")]
        pb = [json.loads(line) for line in open(b / f"predictions_{split}.jsonl")]
        assert [r["prediction"] for r in pa] == [r["prediction"] for r in pb]
        np.testing.assert_allclose(
            [r["log_likelihoods"] for r in pa], [r["log_likelihoods"] for r in pb], rtol=1e-6
        )
    history = [json.loads(line) for line in open(a / "history.jsonl")]
    assert len(history) == 1  # one set of reports: process 1 wrote nothing
    assert json.loads((a / "run_info.json").read_text())["label_names"] == ["neg", "pos"]


def test_each_process_fed_only_its_own_rows(runs):
    """Process i fed rows [i*B/2, (i+1)*B/2) of every global batch: disjoint, and together what
    the single process fed (the same global order for any number of processes)."""
    p0, p1, one = (fingerprints(runs / f"fed_{n}.jsonl") for n in ("0", "1", "one"))
    assert len(p0) == len(p1) == len(one) > 0
    for a, b, both in zip(p0, p1, one):  # every batch (training, validation, scoring)
        for ka, kb, kboth in zip(a, b, both, strict=True):  # every class model's rows
            assert ka + kb == kboth
            assert len(ka) == len(kb) == len(kboth) // 2


def test_resuming_with_another_process_count_is_refused_in_one_line(runs, tmp_path):
    """The two-process run trained again by one process: refused in one line (not a
    traceback), its checkpoints untouched."""
    import shutil

    wd = tmp_path / "two_procs"
    shutil.copytree(runs / "two_procs", wd)
    before = sorted(str(f.relative_to(wd)) for f in (wd / "checkpoints").rglob("*"))
    p = launch([f"--workdir={wd}", *SMALL], {"FED_ROWS_LOG": str(tmp_path / "fed.jsonl")})
    _, err = p.communicate(timeout=600)
    assert p.returncode == 1, err[-3000:]
    assert err.strip().splitlines()[-1] == (
        f"error: {wd} was trained by 2 process(es); resume it with the same number (this run has 1)"
    )
    assert sorted(str(f.relative_to(wd)) for f in (wd / "checkpoints").rglob("*")) == before


def test_a_killed_process_fails_the_other_within_the_bound(tmp_path):
    port = free_port()
    args = [
        f"--coordinator_address=localhost:{port}",
        "--num_processes=2",
        *SMALL,
        "--config.heartbeat_timeout_s=5",
        "--config.train.epochs=50",
    ]
    procs = [
        launch(
            [f"--workdir={tmp_path / 'w'}", f"--process_id={i}", *args],
            {"FED_ROWS_LOG": str(tmp_path / f"fed_{i}.jsonl")},
        )
        for i in range(2)
    ]
    deadline = time.time() + 300
    while not (tmp_path / "fed_1.jsonl").exists() and time.time() < deadline:  # training has begun
        time.sleep(0.5)
    procs[1].send_signal(signal.SIGKILL)
    t0 = time.time()
    try:
        procs[0].communicate(timeout=120)
    except subprocess.TimeoutExpired:
        procs[0].kill()
        pytest.fail("process 0 still runs 120 s after its peer was killed")
    assert procs[0].returncode != 0 and time.time() - t0 < 120


def class_axis_run(out: str, devices: int, class_shards: int, fsdp: bool = False) -> None:
    """K=4 class models trained in one process with `devices` CPU devices split into
    `class_shards` groups (`fsdp`: each model's params and optimizer state also split over the
    devices of a group); the final params and scores with them saved to `out`."""
    import tempfile

    import jax

    sys.path.insert(0, str(REPO / "tests"))
    from test_train import (
        base_config,
        batches_fn,
        make_epochs,
        model_config,
        tiny_params,
        to_np,
        train,
    )

    assert jax.device_count() == devices
    config = base_config(epochs=1, batch_size=8, class_shards=class_shards, fsdp=fsdp)
    config.model.conditioning = "per_class"
    mc = model_config(config, dropout=0.0)
    data = make_epochs(1, 2, 8, classes=4, seed=3)
    with tempfile.TemporaryDirectory() as d:
        res = train(config, d, mc, tiny_params(mc, 4), batches_fn(data), 2)
    if fsdp:  # the params really are split over 'data' (the largest axis of the token embedding)
        wte = res.params["wte"]["embedding"]
        assert wte.sharding.spec[0] == "class" and "data" in wte.sharding.spec, wte.sharding
    flat = jax.tree_util.tree_flatten_with_path(to_np(res.params))[0]
    arrays = {"/".join(str(getattr(p, "key", p)) for p in path): x for path, x in flat}
    # scoring with the params as training left them (class-sharded): rows go over their mesh
    import functools

    from gencls_jax.data.rows import make_rows
    from gencls_jax.scoring.batched import class_sums, run_rows, text_sums

    texts = [list(range(1, 3 + 7 * i)) for i in range(6)]
    rows = make_rows(texts, mc.n_positions, 0, "truncate", eos_id=1)
    fn = functools.partial(class_sums, config=mc, stacked=True)
    per_row = run_rows(
        res.params, rows, fn, batch_size=4, bucket_lengths=(16, 32), max_len=mc.n_positions,
        progress=False,
    )  # fmt: skip
    arrays["scores"] = text_sums(rows, per_row, len(texts), 4)
    np.savez(out, **arrays)


def run_class_axis(n: int, shards: int, out: str, fsdp: bool = False):
    """class_axis_run in a fresh process of `n` CPU devices."""
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}",
    }
    code = (
        f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); "
        f"from test_multiprocess import class_axis_run; "
        f"class_axis_run({out!r}, {n}, {shards}, {fsdp})"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


CASES = [(2, 2, False), (4, 4, False), (4, 2, False), (2, 1, True), (4, 2, True)]
ONE_DEVICE = (1, 1, False)


@pytest.fixture(scope="module")
def class_axis(tmp_path_factory):
    """{case: (its process, its npz)} of every case of CASES and of ONE_DEVICE, the reference,
    run two at a time (each is mostly one core compiling, and CI has two)."""
    d = tmp_path_factory.mktemp("class_axis")

    def run_cases(cases):
        outs = [str(d / f"{n}_{shards}_{fsdp}.npz") for n, shards, fsdp in cases]
        done = [run_class_axis(n, shards, out, fsdp) for (n, shards, fsdp), out in zip(cases, outs)]
        return dict(zip(cases, zip(done, outs)))

    cases = [ONE_DEVICE, *CASES]
    halves = in_parallel(lambda: run_cases(cases[::2]), lambda: run_cases(cases[1::2]))
    return {**halves[0], **halves[1]}


def _loaded(process, out: str):
    assert process.returncode == 0, process.stderr[-3000:]
    return np.load(out)


@pytest.mark.parametrize("devices,class_shards,fsdp", CASES)
def test_class_axis_equals_one_device(class_axis, devices, class_shards, fsdp):
    """The class axis, and FSDP-style parameter sharding over 'data' (alone and with the class
    axis), give the one-device params and scores."""
    ref = _loaded(*class_axis[ONE_DEVICE])
    got = _loaded(*class_axis[(devices, class_shards, fsdp)])
    assert set(ref.files) == set(got.files)
    for k in ref.files:  # the tolerance of test_train.py's eight-devices test (Adam's float noise)
        np.testing.assert_allclose(ref[k], got[k], rtol=1e-5, atol=1e-5, err_msg=k)
