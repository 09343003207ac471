"""What an interruption or a second command may not do to a workdir's files: atomic writers that
leave the old file on an error, logs whose torn last line is ignored, the workdir lock (a second
writing command refused in one line, a dead holder's lock taken over), and metrics rows past the
step a run resumes from dropped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, run_cli
from test_train import base_config, batches_fn, make_epochs, model_config, tiny_params, train

from gencls_jax.reports import events
from gencls_jax.reports import logs as metrics
from gencls_jax.runs import lock, workdir
from gencls_jax.runs.checkpoint import Checkpointer
from gencls_jax.system import fileio

# --- atomic writers ---------------------------------------------------------------------------


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders left beside the outputs (hidden names)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_an_error_mid_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "predictions.jsonl"
    fileio.write_text(path, "old\n")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with fileio.atomic_open(path) as f:
            f.write("new, half")
            f.flush()
            raise RuntimeError("disk on fire")
    assert path.read_text() == "old\n" and leftovers(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):
        with fileio.atomic_open(path, "wb") as f:
            f.write(b"\x89PNG half")
            raise KeyboardInterrupt
    assert path.read_text() == "old\n" and leftovers(tmp_path) == []
    fileio.write_bytes(path, b"new\n")
    assert path.read_bytes() == b"new\n" and leftovers(tmp_path) == []
    # the permissions of a plain write (the umask's), not the tempfile module's private 0600
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "eval_x"
    with fileio.replaced_folder(target) as d:
        (d / "report.md").write_text("first")
        (d / "only_in_first.txt").write_text("x")
    assert sorted(p.name for p in target.iterdir()) == ["only_in_first.txt", "report.md"]
    with pytest.raises(KeyboardInterrupt):
        with fileio.replaced_folder(target) as d:
            (d / "report.md").write_text("second, unfinished")
            raise KeyboardInterrupt
    assert (target / "report.md").read_text() == "first" and leftovers(tmp_path) == []
    with fileio.replaced_folder(target) as d:
        (d / "report.md").write_text("second")
    assert [p.name for p in target.iterdir()] == ["report.md"]
    assert (target / "report.md").read_text() == "second" and leftovers(tmp_path) == []


def test_torn_last_line_of_the_logs_is_ignored(tmp_path):
    """A process killed mid-line leaves a torn last line in metrics.jsonl or history.jsonl: it is
    ignored on read, and the next line appended stays whole."""
    rows = [{"step": 1, "kind": "train", "train_loss": 2.5}, {"step": 2, "kind": "train"}]
    good = "".join(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "metrics.jsonl").write_text(good + '{"step": 3, "kind": "tr')
    assert metrics.read_metrics(tmp_path / "metrics.jsonl") == rows
    (tmp_path / "history.jsonl").write_text('{"mode": "train"}\n{"mode": "ev')
    assert fileio.read_jsonl(tmp_path / "history.jsonl") == [{"mode": "train"}]

    writer = metrics.MetricsWriter(tmp_path, tensorboard=False)
    writer.write(3, "train", {"train_loss": 1.5})
    assert metrics.read_metrics(tmp_path / "metrics.jsonl") == rows + [
        {"step": 3, "kind": "train", "train_loss": 1.5}
    ]
    workdir.append_history(tmp_path, "predict", texts=2)
    assert [h["mode"] for h in fileio.read_jsonl(tmp_path / "history.jsonl")] == [
        "train",
        "predict",
    ]


# --- the workdir lock -------------------------------------------------------------------------

HOLD = textwrap.dedent(
    """
    import sys, time
    from gencls_jax.runs.lock import WorkdirLock
    WorkdirLock(sys.argv[1], "train").acquire()
    print("held", flush=True)
    time.sleep(600)
    """
)


@pytest.fixture
def holder(tmp_path):
    """A live process holding the lock of tmp_path/run (as a training would)."""
    wd = tmp_path / "run"
    wd.mkdir()
    p = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(wd)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert p.stdout.readline().strip() == "held"
    yield wd, p
    p.kill()
    p.wait()


def test_a_second_writing_command_is_refused_in_one_line(holder):
    wd, p = holder
    (wd / "config.json").write_text("{}")  # a run's file: it must stay as it was
    before = {f.name: f.read_bytes() for f in wd.iterdir()}
    with pytest.raises(lock.WorkdirBusy) as busy:
        lock.WorkdirLock(wd, "eval").acquire()
    assert f"pid {p.pid} on host {socket.gethostname()} (--mode=train since " in str(busy.value)
    cmd = [
        sys.executable,
        str(REPO / "run.py"),
        "--config=" + str(REPO / "configs" / "tiny.py"),
        f"--workdir={wd}",
    ]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {wd} is in use by pid {p.pid} on host {socket.gethostname()}")
    assert "(--mode=train since 20" in line and line.endswith("or use another --workdir")
    assert {f.name: f.read_bytes() for f in wd.iterdir()} == before


def test_the_lock_of_a_dead_process_is_taken_over(holder):
    """Killed with SIGKILL, the holder leaves its lock file (naming it) behind: the next command
    takes the lock. A lock file naming this very process but not locked (another start, the pid
    reused) is taken as well: only a live holder counts."""
    wd, p = holder
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert lock.read_holder(wd)["pid"] == p.pid
    with lock.WorkdirLock(wd, "eval"):
        held = lock.read_holder(wd)
        assert held["pid"] == os.getpid() and held["mode"] == "eval"
        assert held["start_time"] == lock.process_start_time(os.getpid()) != ""
    assert not (wd / lock.LOCK_FILE).exists()  # a finished command leaves no lock file
    stale = dict(held, start_time="1", since="2020-01-01T00:00:00")
    (wd / lock.LOCK_FILE).write_text(json.dumps(stale))
    with lock.WorkdirLock(wd, "train"):
        assert lock.read_holder(wd)["start_time"] == held["start_time"]


def test_a_new_workdir_left_empty_goes_with_the_lock(tmp_path):
    wd = tmp_path / "new_run"
    with lock.WorkdirLock(wd, "train"):
        assert wd.is_dir()
    assert not wd.exists()  # the command wrote nothing there: no empty folder left


# --- metrics of a resumed run ----------------------------------------------------------------


def test_metrics_rows_past_the_restored_step_are_dropped(tmp_path):
    """A run trained to step 8 whose checkpoints after step 4 are gone resumes from step 4 and
    stops at 6: its metrics.jsonl equals that of a run trained straight to step 6 (no train rows
    of steps 7, 8, no eval row of step 8 left over)."""
    data = make_epochs(2, 4, 8)
    mc = model_config(base_config())

    def run(folder, max_steps):
        c = base_config(ckpt_every=2, keep_checkpoints=10, max_steps=max_steps)
        return train(c, folder, mc, tiny_params(mc), batches_fn(data), 4, lambda p: {"x": 1.0})

    run(tmp_path / "resumed", 0)
    ckpts = tmp_path / "resumed" / "checkpoints"
    for step in (6, 8):
        shutil.rmtree(ckpts / str(step))
    assert Checkpointer(ckpts, 10, "").latest_step() == 4
    res = run(tmp_path / "resumed", 6)
    assert res.stop_reason == "max_steps" and [h["step"] for h in res.history] == [5, 6]
    run(tmp_path / "straight", 6)

    def rows(folder):
        return [
            (r["step"], r["kind"], r.get("train_loss"))
            for r in metrics.read_metrics(tmp_path / folder / "metrics.jsonl")
        ]

    assert rows("resumed") == rows("straight")
    assert [s for s, k, _ in rows("straight")] == [1, 2, 3, 4, 4, 5, 6]


TB_SCRIPT = """
import json, sys
from gencls_jax.reports import logs
w = logs.MetricsWriter(sys.argv[1], tensorboard=True)
w.write(1, "train", {"train_loss": 2.5, "lr": float("nan"), "skipped_steps": 0})
w.write(2, "eval", {"val_accuracy": 0.75, "val_loss": 1e-3})
w.write(2**40, "train", {"train_loss": -3.25})
w.close()
writers = ("torch", "tensorboardX", "tensorboard")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in writers)))
"""


def test_tensorboard_events_read_back_by_tensorboard(tmp_path):
    """The scalars of metrics.jsonl (non-finite ones left out) as TensorBoard's own reader finds
    them, every record's CRC checked, written in a fresh process that imports no writer library
    (torch's import held the GIL over ~2.5 s of a GPU run's first steps)."""
    reader = "tensorboard.backend.event_processing.event_accumulator"
    event_accumulator = pytest.importorskip(reader)
    p = run_cli(str(tmp_path / "run"), program=["-c", TB_SCRIPT])
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout.strip().splitlines()[-1]) == []  # no writer library imported
    acc = event_accumulator.EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    got = {t: [(s.step, s.value) for s in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    assert got == {
        "train/train_loss": [(1, 2.5), (2**40, -3.25)],
        "train/skipped_steps": [(1, 0.0)],
        "eval/val_accuracy": [(2, 0.75)],
        "eval/val_loss": [(2, pytest.approx(1e-3, rel=1e-7))],  # float32
    }
    assert [r["step"] for r in metrics.read_metrics(tmp_path / "run" / "metrics.jsonl")] == [
        1,
        2,
        2**40,
    ]


def test_crc32c_check_values():
    """CRC-32C's published check values (the CRC catalogue; RFC 3720 B.4), and the masked CRC
    TFRecord stores, against TensorBoard's own implementation."""
    assert events.crc32c(b"123456789") == 0xE3069283
    assert events.crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros
    assert events.crc32c(b"\xff" * 32) == 0x62A8AB43  # 32 bytes of ones
    stub = pytest.importorskip("tensorboard.compat.tensorflow_stub.pywrap_tensorflow")
    for data in (b"", b"123456789", bytes(range(256)) * 3):
        assert events.masked_crc32c(data) == stub.masked_crc32c(data)


def test_tensorboard_off_writes_no_events(tmp_path):
    """`train.tensorboard=False`: metrics.jsonl only."""
    w = metrics.MetricsWriter(tmp_path, tensorboard=False)
    w.write(1, "train", {"train_loss": 1.0})
    w.close()
    assert not (tmp_path / "tensorboard").exists()
    assert [r["step"] for r in metrics.read_metrics(tmp_path / "metrics.jsonl")] == [1]
