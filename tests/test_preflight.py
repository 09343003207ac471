"""Paths a run needs are checked before its data phase: one line naming every missing one; a
missing config file is one line too."""

import re
import subprocess
import sys

import pytest
from conftest import REPO

from configs.base import get_config
from gencls_jax import conditioning
from gencls_jax.commands import preflight, train
from gencls_jax.errors import DataError


def test_missing_model_init_fails_before_the_data_phase(tmp_path, monkeypatch):
    def data_phase(*a, **k):
        raise AssertionError("the data phase started")

    monkeypatch.setattr(conditioning, "load_data", data_phase)
    c = get_config()
    c.data.source, c.data.tokenizer = "tfds", "gpt2"  # nothing else a path
    c.model.init = str(tmp_path / "runs" / "pretrain" / "export")
    with pytest.raises(DataError) as e:
        train.train_and_evaluate(c, tmp_path / "wd")
    assert str(e.value) == f"model.init={c.model.init}: no such folder"
    assert not (tmp_path / "wd").exists()


def test_every_missing_path_in_one_line(tmp_path):
    c = get_config()
    c.data.source = "jsonl"
    (tmp_path / "train.jsonl").write_text('{"text": "x", "label": 0}\n')
    c.data.train_path = str(tmp_path / "train.jsonl")
    c.data.test_path = str(tmp_path / "test.jsonl")
    c.data.val_path = str(tmp_path / "dev.csv")
    c.data.extra_train_path = str(tmp_path / "synthetic.jsonl")
    c.data.tokenizer = str(tmp_path / "tok")
    c.model.init, c.model.pretrained = "pretrained", str(tmp_path / "gpt2" / "local")
    with pytest.raises(DataError) as e:
        preflight.check_paths(c)
    assert str(e.value) == "; ".join(
        [
            f"data.test_path={tmp_path}/test.jsonl: no such file",
            f"data.val_path={tmp_path}/dev.csv: no such file",
            f"data.extra_train_path={tmp_path}/synthetic.jsonl: no such file",
            f"data.tokenizer={tmp_path}/tok: no such folder",
            f"model.pretrained={tmp_path}/gpt2/local: no such folder",
        ]
    )
    # eval reads no initial model; a run that scores no test set reads no test file
    c.data.val_path = c.data.extra_train_path = ""
    c.data.tokenizer = str(tmp_path)
    c.eval.splits = ()
    with pytest.raises(DataError, match=r"^model.pretrained=.*: no such folder$"):
        preflight.check_paths(c)
    with pytest.raises(DataError, match=r"^data.test_path=.*: no such file$"):
        preflight.check_paths(c, "eval")
    c.model.init = "scratch"
    preflight.check_paths(c)
    c.eval.splits = ("val",)  # validation only: the test file is neither needed nor read
    preflight.check_paths(c)
    c.eval.splits = ("val", "test")
    with pytest.raises(DataError, match=r"^data.test_path=.*: no such file$"):
        preflight.check_paths(c)


def test_a_run_that_scores_validation_only_loads_no_test_split(tmp_path, monkeypatch):
    asked = []

    def data_phase(config, splits, *a, **k):
        asked.append(tuple(splits))
        raise DataError("stop after the data phase's request")

    monkeypatch.setattr(conditioning, "load_data", data_phase)
    c = get_config()
    c.data.source, c.data.tokenizer, c.model.init = "tfds", "gpt2", "scratch"
    for splits in [("val",), ("val", "test"), ()]:
        c.eval.splits = splits
        with pytest.raises(DataError, match="stop after"):
            train.train_and_evaluate(c, tmp_path / f"wd{len(asked)}")
    assert asked == [("train", "val"), ("train", "val", "test"), ("train", "val")]


def test_pretraining_checks_its_own_splits(tmp_path):
    c = get_config()
    c.model.conditioning, c.model.init, c.data.tokenizer = "unconditional", "scratch", "gpt2"
    c.data.source = "jsonl"
    (tmp_path / "train.jsonl").write_text('{"text": "x", "label": 0}\n')
    c.data.train_path = str(tmp_path / "train.jsonl")
    c.data.test_path = str(tmp_path / "never_read.jsonl")
    c.data.unsup_path = str(tmp_path / "unsup.jsonl")
    with pytest.raises(DataError) as e:
        preflight.check_paths(c)
    assert str(e.value) == f"data.unsup_path={tmp_path}/unsup.jsonl: no such file"


def cli(*args):
    return subprocess.run(
        [sys.executable, str(REPO / "run.py"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_config_file_errors_are_one_line(tmp_path):
    p = cli("--config=configs/nope.py", f"--workdir={tmp_path}")
    assert (p.returncode, p.stdout, p.stderr) == (
        1,
        "",
        "error: --config=configs/nope.py: no such file\n",
    )
    bad = tmp_path / "bad.py"
    bad.write_text("def get_config(:\n")
    p = cli(f"--config={bad}", f"--workdir={tmp_path}")
    assert p.returncode == 1
    assert re.fullmatch(rf"error: {bad}:1: invalid Python in the config file \(.+\)\n", p.stderr)
