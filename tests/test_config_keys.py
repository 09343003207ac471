"""Config keys are declared once (gencls_jax/config_keys.py): configs/base.py, `--help_config`,
the resume and eval rules and the overrides of a run's own config all read that one table;
`--help` lists the modes and their flags, from any folder, without a config."""

import json
import os
import re
import subprocess
import sys

import ml_collections
import pytest
from absl import flags
from conftest import REPO

from gencls_jax import cli, config_keys
from gencls_jax.config_keys import Key
from gencls_jax.errors import RunError
from gencls_jax.runs import rules

MODES = ("train", "eval", "generate", "report", "predict", "explain")  # issue 28, item 9


def leaves(config, prefix=""):
    """{dotted key: value} of a ConfigDict, values as they are (tuples stay tuples)."""
    out = {}
    for k, v in config.items():
        if isinstance(v, ml_collections.ConfigDict):
            out.update(leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A folder holding only the package (as pip installs it: no configs/, no run.py), and
    another folder to run from."""
    site = tmp_path_factory.mktemp("site")
    (site / "gencls_jax").symlink_to(REPO / "gencls_jax")
    return site, tmp_path_factory.mktemp("elsewhere")


def gencls(installed, *args):
    """The `gencls` console script (gencls_jax.cli:main), run from another folder."""
    site, cwd = installed
    code = "import sys; sys.argv[0] = 'gencls'; from gencls_jax.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(site)},
    )


def test_configs_base_is_the_declared_defaults():
    from configs import base

    assert base.get_config() == config_keys.defaults()
    assert sorted(k.name for k in config_keys.KEYS) == sorted(leaves(config_keys.defaults()))
    assert {k.kind for k in config_keys.KEYS} <= set(config_keys.KINDS)
    assert all(k.meaning.strip() for k in config_keys.KEYS)
    # the offline fallbacks are the ../shared files beside the checkout (tests/conftest.py)
    assert config_keys.defaults().data.tokenizer_fallback == str(
        REPO.parent / "shared" / "data" / "gpt2-tokenizer"
    )


def test_help_config_lists_every_key_with_its_default_kind_and_meaning(installed):
    p = gencls(installed, "--help_config")
    assert p.returncode == 0, p.stderr[-2000:]
    listed, meaning = {}, {}
    key = None
    for line in p.stdout.splitlines():
        m = re.fullmatch(r"(\S+) = (.*)  \[(\w+)\]", line)
        if m:
            key = m.group(1)
            listed[key] = (m.group(2), m.group(3))
        elif key and line.startswith("    "):
            meaning[key] = meaning.get(key, "") + line.strip()
    values = leaves(config_keys.defaults())
    assert sorted(listed) == sorted(values)
    for name, value in values.items():
        shown, kind = listed[name]
        assert shown == repr(value), name
        assert kind == config_keys.kind(name) and kind in p.stdout.split("\n\n")[0], name
        assert meaning[name], name


def test_help_lists_every_mode_and_the_flags_each_takes(installed):
    p = gencls(installed, "--help")
    assert p.returncode == 0, p.stderr[-2000:]
    text = p.stdout
    assert text.startswith("usage: gencls")
    blocks = re.findall(r"^  (\w+) +(.+)\n((?: {12}.+\n)+)", text, flags=re.M)
    synopses = {mode: " ".join(rest.split()) for mode, _, rest in blocks}
    assert set(MODES) <= set(synopses)
    takes = " ".join(synopses.values()) + " " + text[text.index("every mode but report") :]
    for f in flags.FLAGS.get_flags_for_module(cli.__name__):
        assert f"  --{f.name}: " in text, f.name  # its help line
        if f.name != "mode":
            assert re.search(rf"--{f.name}\b", takes), f"no mode lists --{f.name}"
    for needed in ("--help_config", "--config.KEY=VALUE"):
        assert needed in text
    assert "--config --workdir" in synopses["train"] and "--workdirs" in synopses["report"]
    # run.py is the same program, and -h the same help
    q = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "-h"],
        cwd=installed[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert q.returncode == 0 and q.stdout == text


# --- the resume and eval rules read each key's kind ---------------------------------------------


def trained_with(tmp_path, **values) -> "ml_collections.ConfigDict":
    """A workdir whose config.json is the defaults with `values` ({'train.lr': ...}); returns a
    fresh copy of that config to change."""
    config = config_keys.defaults()
    config.update_from_flattened_dict(values)
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    return rules.saved_config(tmp_path)


def resumes(tmp_path, config, **changes) -> bool:
    config = ml_collections.ConfigDict(config.to_dict())
    config.update_from_flattened_dict(changes)
    try:
        rules.check_resume(tmp_path, config)
        return True
    except rules.ConfigMismatch:
        return False


def test_resume_rules_by_kind(tmp_path):
    c = trained_with(tmp_path, **{"train.epochs": 6, "train.max_steps": 2})
    assert not resumes(tmp_path, c, **{"train.lr": 0.01})  # model
    assert not resumes(tmp_path, c, **{"data.per_class_limit": 12})  # model
    assert not resumes(tmp_path, c, **{"model.dtype": "float32"})  # eval: not in a training
    assert resumes(tmp_path, c, **{"train.log_every": 1, "eval.batch_size": 4})  # runtime
    assert resumes(tmp_path, c, **{"train.epochs": 8}) and not resumes(
        tmp_path, c, **{"train.epochs": 4}
    )  # grows
    assert all(resumes(tmp_path, c, **{"train.max_steps": n}) for n in (0, 2, 5))  # limit
    assert not resumes(tmp_path, c, **{"train.max_steps": 1})
    config = ml_collections.ConfigDict(c.to_dict())
    config.train.lr = 0.01
    with pytest.raises(rules.ConfigMismatch, match=r"train\.lr \(5e-05 -> 0\.01\)"):
        rules.check_resume(tmp_path, config)
    (tmp_path / "unlimited").mkdir()
    unlimited = trained_with(tmp_path / "unlimited", **{"train.max_steps": 0})
    assert not resumes(tmp_path / "unlimited", unlimited, **{"train.max_steps": 5})  # put back


def test_eval_rules_by_kind(tmp_path):
    c = trained_with(tmp_path)
    given = ml_collections.ConfigDict(c.to_dict())
    given.model.dtype, given.data.test_path, given.eval.batch_size = "float32", "other.jsonl", 4
    given.train.lr = 0.5  # a training setting: ignored by eval
    config, used = rules.eval_config(tmp_path, given)
    assert set(used) == {"model.dtype", "data.test_path", "eval.batch_size"}
    assert (config.model.dtype, config.data.test_path, config.eval.batch_size) == (
        "float32",
        "other.jsonl",
        4,
    )
    assert config.train.lr == c.train.lr
    given.data.train_path = "another.jsonl"  # model, outside train.*: refused
    with pytest.raises(rules.ConfigMismatch, match="data.train_path"):
        rules.eval_config(tmp_path, given)


def test_a_new_key_is_one_declaration(tmp_path, monkeypatch):
    """One Key(...) entry: a default in every config (an older run's config.json gains it), a
    line in --help_config, an override of a run's own config, and its kind in the resume rule."""
    c = trained_with(tmp_path)  # config.json written before the new keys existed
    new = (
        Key("train.knob_model", 3, config_keys.MODEL, "a new training setting"),
        Key("explain.knob_runtime", 5, config_keys.RUNTIME, "a new explain setting"),
        Key("train.knob_grows", 2, config_keys.GROWS, "a new count that may grow"),
    )
    monkeypatch.setattr(config_keys, "KEYS", config_keys.KEYS + new)
    from configs import base

    assert leaves(base.get_config())["explain.knob_runtime"] == 5
    assert "explain.knob_runtime = 5  [runtime]\n    a new explain setting" in config_keys.table()
    c = rules.saved_config(tmp_path)
    assert (c.train.knob_model, c.explain.knob_runtime, c.train.knob_grows) == (3, 5, 2)
    assert not resumes(tmp_path, c, **{"train.knob_model": 4})
    assert resumes(tmp_path, c, **{"explain.knob_runtime": 6})
    assert resumes(tmp_path, c, **{"train.knob_grows": 3})
    assert not resumes(tmp_path, c, **{"train.knob_grows": 1})
    overridden, rest = config_keys.overridden(c, ["gencls", "--config.explain.knob_runtime=7"])
    assert overridden.explain.knob_runtime == 7 and rest == ["gencls"]


def test_overrides_of_a_runs_own_config(tmp_path):
    """Eval/generate/predict/explain without --config: ml_collections parses the overrides on the
    run's own config (types, `--key value`, `--nokey`), and the other flags pass through."""
    c = trained_with(tmp_path, **{"train.plot": True})
    argv = [
        "gencls",
        "--mode",
        "eval",
        "--config.eval.batch_size",
        "4",
        "--noconfig.train.plot",
        "--config.data.test_path=x.jsonl",
        f"--workdir={tmp_path}",
    ]
    config, rest = config_keys.overridden(c, argv)
    assert (config.eval.batch_size, config.train.plot, config.data.test_path) == (
        4,
        False,
        "x.jsonl",
    )
    assert rest == ["gencls", "--mode", "eval", f"--workdir={tmp_path}"]
    with pytest.raises((KeyError, AttributeError), match="epochz"):
        config_keys.overridden(trained_with(tmp_path), ["gencls", "--config.train.epochz=3"])


def test_a_damaged_config_json_is_one_line(tmp_path, installed):
    (tmp_path / "config.json").write_text('{"seed": 0, "train": ')
    with pytest.raises(RunError, match="config.json does not load"):
        rules.saved_config(tmp_path)
    p = gencls(installed, "--mode=eval", f"--workdir={tmp_path}")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert (
        p.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: {tmp_path / 'config.json'} does not load (JSONDecodeError: ")
    )
