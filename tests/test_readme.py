"""Every command in README.md's ```bash blocks, extracted and checked, so that none can rot.

The parser reads the README's text (a test feeds it broken variants): it joins backslash-continued
lines, drops `#` comments, splits `&&` chains, reads `cat FILE | ...` and `... > FILE`, and takes
the program out of `srun ...` and `gcloud ... --command="cd gencls_jax && python run.py ..."`.
`gencls` and `python run.py` are the same program.

Checked, every command (`problems`):
- run.py / gencls: --mode is one of cli.MODES, every flag is one cli.py defines, with a value its
  parser takes, and one the mode takes (cli.MODES: needs and takes; the multi-process flags in
  every mode but report); --config=FILE exists and loads; every --config.KEY is declared in
  config_keys.KEYS and its value parses (config_keys.overridden, as the program parses it); every
  `../shared` path exists; the workdirs of eval/generate/predict/explain/report (an ensemble
  eval's --workdirs; its --workdir is the new folder it writes) and a
  model.init=<workdir>/export are made by a training command of the README; explain's --against
  is a class of that run.
- pip install: `-e .` with extras pyproject.toml declares.
- the test command: the only place `ruff`, `lint-imports` and `pytest` may appear, and `.ci/run`
  runs it exactly.
- `cd`: only inside a command for other hosts (gcloud's --command).
Any other command fails the test: a README command is either run or checked.

Run for real (`runnable`, a rule, not a list), in a temporary folder: a training command that
trains a tiny model from scratch on local files (model.size='tiny', model.init='scratch',
data.source jsonl or csv; today configs/first_run.py and configs/tiny.py) on one process, with
tiny overrides (TINY), and then every command on a workdir such a training made, as written, on
input files the test writes in the format their names say. Today that is the first command
(runs/first_run) and the predict and explain examples on runs/first_run.
Checked only: everything else: the GPU recipes (a hub GPT-2 or model.init=<export>) and the
commands on their workdirs, the multi-process, SLURM and TPU commands (other hosts), pip install,
the test command (CI runs it). A README command on runs/first_run whose outputs this file cannot
check (a mode without an entry in `expected_outputs`) fails instead of passing unchecked.
"""

import csv
import gzip
import importlib
import io
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import NamedTuple

import pytest
from absl import flags
from conftest import IMDB_DIR, REPO, SHARED, TOKENIZER_DIR, XLA_CACHE

from gencls_jax import cli, config_keys

README = (REPO / "README.md").read_text()
CI_RUN = (REPO / ".ci" / "run").read_text()

CLI_FLAGS = {f.name: f for f in flags.FLAGS.get_flags_for_module(cli.__name__)}
KEY_NAMES = {k.name for k in config_keys.KEYS}
RUN_MODES = ("eval", "generate", "predict", "explain")  # the modes that read a trained workdir
LOCAL = ("jsonl", "csv")  # data sources read from files (tfds may download)


# --- the README's commands --------------------------------------------------------------------


class Command(NamedTuple):
    line: str  # the README line it comes from (continuations joined)
    argv: tuple  # the program and its arguments; run.py's (and gencls's) program is "run.py"
    stdin: str | None = None  # `cat FILE | ...`
    stdout: str | None = None  # `... > FILE`
    host: str = ""  # "srun" / "gcloud": runs on a cluster's hosts


def shell_words(text: str) -> list[str]:
    """The words of a shell line as bash splits them, `#` comments dropped, and `&&`, `|`, `>`
    as words of their own."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def bash_lines(readme: str) -> list[str]:
    """The lines of every ```bash block, backslash continuations joined, comment lines left out."""
    lines: list[str] = []
    block: list[str] | None = None
    for raw in readme.splitlines():
        if block is None:
            block = [] if raw.strip() == "```bash" else None
        elif raw.strip() == "```":
            lines += "\n".join(block).replace("\\\n", " ").splitlines()
            block = None
        else:
            block.append(raw)
    return [" ".join(line.split()) for line in lines if shell_words(line)]


def _split(words: list[str], sep: str) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for w in words:
        parts.append([]) if w == sep else parts[-1].append(w)
    return parts


def commands(line: str, text: str | None = None, host: str = "") -> list[Command]:
    """The commands of one README line (of `text`, a remote --command, when given)."""
    out = []
    for chain in _split(shell_words(line if text is None else text), "&&"):
        stages, stdin = _split(chain, "|"), None
        if len(stages) == 2 and len(stages[0]) == 2 and stages[0][0] == "cat":
            stdin, stages = stages[0][1], stages[1:]
        words = [w for stage in stages for w in [*stage, "|"]][:-1]  # a longer pipe stays whole
        stdout = None
        if len(words) > 2 and words[-2] == ">":
            words, stdout = words[:-2], words[-1]
        while words and re.fullmatch(r"[A-Za-z_]\w*=\S*", words[0]):  # VAR=value prefixes
            words = words[1:]
        where = host
        if words[:1] == ["srun"]:
            words, where = words[1:], "srun"
            while words and words[0].startswith("-"):  # srun's own options
                words = words[1:]
        if words[:1] == ["gcloud"]:
            remote = [w.split("=", 1)[1] for w in words if w.startswith("--command=")]
            out += [c for r in remote for c in commands(line, r, "gcloud")] or [
                Command(line, tuple(words))
            ]
            continue
        if words[:1] == ["gencls"]:
            words = ["run.py", *words[1:]]
        elif words[:1] in (["python"], ["python3"]) and words[1:2] == ["run.py"]:
            words = words[1:]
        out.append(Command(line, tuple(words), stdin, stdout, where))
    return out


def readme_commands(readme: str) -> list[Command]:
    return [c for line in bash_lines(readme) for c in commands(line)]


def ci_command(ci_run: str) -> str:
    """.ci/run's last command line."""
    lines = [ln for ln in ci_run.splitlines() if ln.strip() and not ln.startswith("#")]
    return " ".join(lines[-1].split())


# --- a run.py command's flags and config --------------------------------------------------------


class Args(NamedTuple):
    flags: dict  # flag name -> its values, in order
    overrides: list  # the --config.KEY=VALUE arguments
    errors: list


def parse_args(args) -> Args:
    """run.py's arguments as absl reads them: --name=value, --name value, --bool, --nobool."""
    values: dict[str, list[str]] = {}
    overrides, errors, rest = [], [], list(args)
    while rest:
        arg = rest.pop(0)
        if not arg.startswith("--"):
            errors.append(f"{arg!r} is not a flag (run.py takes no positional arguments)")
            continue
        name, eq, value = arg[2:].partition("=")
        if name.startswith("config."):
            overrides.append(arg if eq or not rest else f"{arg}={rest.pop(0)}")
            continue
        flag = CLI_FLAGS.get(name)
        if (
            flag is None
            and name.startswith("no")
            and getattr(CLI_FLAGS.get(name[2:]), "boolean", 0)
        ):
            flag, name, eq, value = CLI_FLAGS[name[2:]], name[2:], "=", "false"
        if flag is None:
            errors.append(f"unknown flag --{name} (run.py --help lists its flags)")
            continue
        if not eq:
            if not flag.boolean and not rest:
                errors.append(f"--{name} has no value")
                continue
            value = "true" if flag.boolean else rest.pop(0)
        if name != "config":  # the config file is checked on its own
            try:
                flag.parser.parse(value)
            except (ValueError, TypeError) as e:
                errors.append(f"--{name}={value}: {e}")
        values.setdefault(name, []).append(value)
    return Args(values, overrides, errors)


def experiment_config(path: str):
    """configs/NAME.py's config (experiment files import configs.base: the repo on sys.path)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module("configs." + Path(path).stem).get_config()


def shared_path(value: str) -> Path:
    """A README path under `../shared` (the repo's sibling), where the tests find ../shared."""
    return SHARED / Path(value).relative_to("../shared")


def mode_of(cmd: Command) -> str:
    return parse_args(cmd.argv[1:]).flags.get("mode", ["train"])[-1]


def workdir_of(cmd: Command) -> str:
    return os.path.normpath(parse_args(cmd.argv[1:]).flags.get("workdir", [""])[-1])


def is_train(cmd: Command) -> bool:
    return cmd.argv[:1] == ("run.py",) and mode_of(cmd) == "train"


def final_config(cmd: Command):
    """The config a run.py command runs with: its --config file (else today's defaults, the keys
    and types of a run's own config.json) with its overrides. Raises what the program would."""
    a = parse_args(cmd.argv[1:])
    config = experiment_config(a.flags["config"][-1]) if "config" in a.flags else None
    return config_keys.overridden(config or config_keys.defaults(), ["run.py", *a.overrides])[0]


def class_names(cmd: Command) -> set | None:
    """A training command's classes: its config's label_names, else the labels of its local
    jsonl training file; None when they cannot be known here."""
    data = final_config(cmd).data
    if data.label_names:
        return set(data.label_names)
    path = Path(data.train_path)
    if data.train_path.startswith("../shared"):
        path = shared_path(data.train_path)
    if data.source != "jsonl" or not path.is_file() or path.suffix != ".jsonl":
        return None
    return {json.loads(line)[data.label_field] for line in path.open()}


# --- the static checks --------------------------------------------------------------------------


def check_run(cmd: Command, trained: dict) -> list[str]:
    """A run.py command's problems; `trained`: the README's training commands by workdir."""
    a = parse_args(cmd.argv[1:])
    errors = list(a.errors)
    mode = a.flags.get("mode", ["train"])[-1]
    if mode not in cli.MODES:
        return errors + [f"--mode={mode} is not a mode ({', '.join(cli.MODES)})"]
    _, needs, takes = cli.MODES[mode]
    allowed = {"mode", *needs, *takes, *(cli._MULTI_PROCESS if mode != "report" else ())}
    errors += [f"--mode={mode} does not take --{n}" for n in a.flags if n not in allowed]
    errors += [f"--mode={mode} needs --{n}" for n in needs if n not in a.flags]
    if a.overrides and cli._OVERRIDES not in takes:
        errors.append(f"--mode={mode} takes no --config.* overrides")
    for name, values in a.flags.items():
        for v in (x for value in values for x in value.split(",")):
            if v.startswith("../shared") and not shared_path(v).exists():
                errors.append(f"--{name}: {v} does not exist")
    for o in a.overrides:
        key, _, value = o[len("--config.") :].partition("=")
        if key not in KEY_NAMES:
            errors.append(f"--config.{key}: no such config key (config_keys.KEYS)")
        if value.startswith("../shared") and not shared_path(value).exists():
            errors.append(f"--config.{key}: {value} does not exist")
    if "config" in a.flags and not (REPO / a.flags["config"][-1]).is_file():
        return errors + [f"--config={a.flags['config'][-1]}: no such file in the repo"]
    try:
        config = final_config(cmd)
    except Exception as e:  # what run.py would answer with a one-line error
        return errors + [f"bad --config override: {' '.join(str(e).split())}"]
    untrained = "no training command of the README makes workdir"
    ensemble = mode == "eval" and "workdirs" in a.flags  # --workdir: the ensemble's new folder
    if mode in RUN_MODES and not ensemble and workdir_of(cmd) not in trained:
        errors.append(f"{untrained} {workdir_of(cmd)}")
    for w in a.flags.get("workdirs", [""])[-1].split(","):
        if w and os.path.normpath(w) not in trained:
            errors.append(f"--workdirs: {untrained} {w}")
    init = config.model.init
    if init not in ("pretrained", "scratch"):
        if Path(init).name != "export" or os.path.normpath(Path(init).parent) not in trained:
            errors.append(f"--config.model.init={init}: not <a trained README workdir>/export")
    if mode == "explain" and "against" in a.flags and workdir_of(cmd) in trained:
        try:
            names = class_names(trained[workdir_of(cmd)])
        except Exception:  # the training command's own check reports it
            names = None
        if names is not None and a.flags["against"][-1] not in names:
            errors.append(f"--against={a.flags['against'][-1]}: not a class ({sorted(names)})")
    return errors


def check_pip(cmd: Command) -> list[str]:
    """`pip install -e .` or `-e '.[extra,...]'`, with extras pyproject.toml declares."""
    m = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", cmd.argv[3]) if len(cmd.argv) == 4 else None
    if cmd.argv[2:3] != ("-e",) or m is None:
        return ["only `pip install -e .[extras]` is checked here"]
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"].get(
        "optional-dependencies", {}
    )
    return [
        f"pyproject.toml declares no extra {e!r}"
        for e in (m[1] or "").split(",")
        if e and e not in extras
    ]


def problems(readme: str, ci_run: str = CI_RUN) -> list[str]:
    """Every problem of every command in `readme`'s ```bash blocks, as 'line: problem'."""
    cmds = readme_commands(readme)
    trained = {workdir_of(c): c for c in cmds if is_train(c)}
    out = []
    for c in cmds:
        if c.argv[:1] == ("run.py",):
            errors = check_run(c, trained)
        elif c.argv[:2] == ("pip", "install"):
            errors = check_pip(c)
        elif c.argv[:1] in (("ruff",), ("lint-imports",)) or c.argv[:3] == (
            "python",
            "-m",
            "pytest",
        ):
            errors = (
                [] if c.line == ci_command(ci_run) else ["ruff/pytest outside the test command"]
            )
        elif c.argv[:1] == ("cd",) and c.host:
            errors = []  # into the clone, on the other hosts
        else:
            errors = ["not a command this test knows: add its check to tests/test_readme.py"]
        out += [f"{c.line}: {e}" for e in errors]
    return out


# --- which commands run -------------------------------------------------------------------------


def runnable(cmd: Command, cmds: list[Command]) -> tuple[bool, str]:
    """(whether the test runs `cmd` on this CPU, why): see the module docstring."""
    if cmd.argv[:1] != ("run.py",):
        return False, f"{cmd.argv[0]}: not the program (checked only)"
    a = parse_args(cmd.argv[1:])
    if cmd.host or any(f in a.flags for f in cli._MULTI_PROCESS):
        return False, "needs other processes or hosts"
    if is_train(cmd):
        try:
            c = final_config(cmd)
        except Exception as e:  # `problems` reports it
            return False, f"its config does not load ({type(e).__name__})"
        if c.model.size == "tiny" and c.model.init == "scratch" and c.data.source in LOCAL:
            return True, "trains a tiny model from scratch on local files"
        return False, f"trains {c.model.size} from {c.model.init} on {c.data.source}: a GPU recipe"
    used = [w for w in a.flags.get("workdirs", [""])[-1].split(",") if w] or [workdir_of(cmd)]
    run_made = {workdir_of(t) for t in cmds if is_train(t) and runnable(t, cmds)[0]}
    if {os.path.normpath(w) for w in used} <= run_made:
        return True, f"on {', '.join(used)}, which a run training command makes"
    return False, f"on {', '.join(used)}, made by a command that is only checked"


def plan(readme: str) -> list[tuple[Command, bool, str]]:
    cmds = readme_commands(readme)
    return [(c, *runnable(c, cmds)) for c in cmds]


PLAN = plan(README)
RUN_TRAIN = [c for c, run, _ in PLAN if run and is_train(c)]
RUN_USE = [c for c, run, _ in PLAN if run and not is_train(c)]


# --- the static tests ---------------------------------------------------------------------------


def test_ci_runs_the_readme_test_command():
    """.ci/run's last command is the second line of "Two commands", so they cannot drift."""
    assert ci_command(CI_RUN) == bash_lines(README)[1]
    assert ci_command(CI_RUN).startswith("pip install -e '.[test]' && ")


def missing_configs(readme: str) -> list[str]:
    """The configs/*.py the README names (in its text and its Experiments table) that do not
    exist."""
    table = readme.split("## Experiments (configs/)", 1)[-1].split("```", 1)[0]
    named = re.findall(r"configs/(\w+\.py)", readme) + re.findall(r"^\| `(\w+\.py)`", table, re.M)
    return sorted({n for n in named if not (REPO / "configs" / n).is_file()})


def test_every_config_the_readme_names_exists():
    assert missing_configs(README) == []
    assert missing_configs(README.replace("| `decision.py` |", "| `decisive.py` |")) == [
        "decisive.py"
    ]
    assert missing_configs(README.replace("configs/tiny.py", "configs/tiniest.py")) == [
        "tiniest.py"
    ]


def test_every_readme_command_is_valid():
    found = problems(README)
    assert not found, "\n".join(found)


PARSER_SNIPPET = """
```bash
#!/bin/bash
#SBATCH --nodes=2
pip install -e . && gencls --workdir=a   # a comment, with "quotes" && a pipe |
cat in.txt | JAX_PLATFORMS=cpu python run.py --mode=predict --workdir=a \\
    --text_field=review > out.jsonl
srun python run.py --workdir=b --text="x # y && z"
gcloud compute ssh pod --worker=all --command="cd gencls_jax && \\
    python run.py --workdir=c"
```
```python
python run.py --not=bash
```
"""


PIP_LINE = 'pip install -e . && gencls --workdir=a # a comment, with "quotes" && a pipe |'


def test_the_parser_finds_every_command():
    assert readme_commands(PARSER_SNIPPET) == [
        Command(PIP_LINE, ("pip", "install", "-e", ".")),
        Command(PIP_LINE, ("run.py", "--workdir=a")),
        Command(
            "cat in.txt | JAX_PLATFORMS=cpu python run.py --mode=predict --workdir=a "
            "--text_field=review > out.jsonl",
            ("run.py", "--mode=predict", "--workdir=a", "--text_field=review"),
            stdin="in.txt",
            stdout="out.jsonl",
        ),
        Command(
            'srun python run.py --workdir=b --text="x # y && z"',
            ("run.py", "--workdir=b", "--text=x # y && z"),
            host="srun",
        ),
        *(
            Command(
                'gcloud compute ssh pod --worker=all --command="cd gencls_jax && python run.py '
                '--workdir=c"',
                argv,
                host="gcloud",
            )
            for argv in [("cd", "gencls_jax"), ("run.py", "--workdir=c")]
        ),
    ]


def test_the_plan_runs_the_first_command_and_every_command_on_its_run():
    first = next(c for c, _, _ in PLAN if c.argv[:1] == ("run.py",))
    assert first.argv == ("run.py", "--config=configs/first_run.py", "--workdir=runs/first_run")
    assert RUN_TRAIN == [first]
    on_first = [c for c, _, _ in PLAN if c.argv[:1] == ("run.py",) and not is_train(c)]
    on_first = [c for c in on_first if workdir_of(c) == "runs/first_run"]
    assert {mode_of(c) for c in on_first} >= {"predict", "explain"} and RUN_USE == on_first
    assert {c.host for c, _, _ in PLAN} == {"", "srun", "gcloud"}  # the wrapped ones are found


def _broken(old: str, new: str, readme: str = README) -> list[str]:
    assert old in readme, old
    return problems(readme.replace(old, new))


@pytest.mark.parametrize(
    "old, new, problem",
    [
        ("--skip_bad_lines", "--skip_bad_line", "unknown flag --skip_bad_line"),
        ("--config.train.epochs=12", "--config.train.epoch=12", "--config.train.epoch: no such"),
        ("--config.train.epochs=12", "--config.train.epochs=1.5", "bad --config override"),
        ("--config.train.distributed=True", "--config.train.distributed=ja", "bad --config"),
        ("sst2/dev.jsonl", "sst2/val.jsonl", "../shared/data/sst2/val.jsonl does not exist"),
        ("--mode=eval --workdir=runs/full_6e ", "--mode=eval --workdir=runs/full_7e ", "full_7e"),
        ("runs/full_6e,runs/augmented_6e", "runs/full_6e,runs/aug", "--workdirs: no training"),
        ("init=runs/pretrain/export", "init=runs/pretrained/export", "model.init=runs/pretrained"),
        ("--mode=predict", "--mode=predicts", "--mode=predicts is not a mode"),
        ("--input=new.csv", "--input=new.csv --against=pos", "--mode=predict does not take"),
        ("--report_file=", "--checkpoint=best --report_file=", "report does not take --checkpoint"),
        (
            "--mode=predict --workdir=runs/first_run --input=new.jsonl --output",
            "--mode=predict --input=new.jsonl --output",
            "--mode=predict needs --workdir",
        ),
        ("--against=HUM", "--against=HUMAN", "--against=HUMAN: not a class"),
        ("--against=HUM", "--against HUM extra", "'extra' is not a flag"),
        (
            "configs/full_10e.py --workdir=runs/full_10e --config",
            "configs/full_12e.py --workdir=runs/full_10e --config",
            "--config=configs/full_12e.py: no such file",
        ),
        ("--process_id=1", "--process_id=one", "--process_id=one"),
        ("pip install -e . &&", "pip install -e '.[gpu]' &&", "no extra 'gpu'"),
        ("```bash\n#!/bin/bash", "```bash\nmake all\n#!/bin/bash", "make all: not a command"),
        ("srun python run.py", "srun python run.py --no_such", "unknown flag --no_such"),
        (
            "cd gencls_jax && \\\n    python run.py",
            "cd gencls_jax && \\\n    python run.py --config.nope=1",
            "--config.nope: no such config key",
        ),
    ],
)
def test_a_broken_readme_command_is_caught(old, new, problem):
    found = _broken(old, new)
    assert any(problem in p for p in found), found


def test_a_test_command_that_drifts_from_ci_is_caught():
    drifted = README.replace("lint-imports && python -m pytest", "python -m pytest")
    assert ci_command(CI_RUN) != bash_lines(drifted)[1]
    assert any("ruff/pytest outside the test command" in p for p in problems(drifted))


def test_a_report_on_a_run_the_readme_never_trains_is_caught():
    no_augmented = re.sub(r"^.*--workdir=runs/augmented_6e .*\n", "", README, flags=re.M)
    assert no_augmented != README
    assert any("makes workdir runs/augmented_6e" in p for p in problems(no_augmented))


# --- the commands run on this CPU ---------------------------------------------------------------

needs_shared = pytest.mark.skipif(
    not (IMDB_DIR / "train.jsonl.gz").exists() or not TOKENIZER_DIR.exists(),
    reason="needs ../shared/data",
)
# appended to a run training command: the first run in ~25 s on 2 cores (60 texts per class, a
# 256-id vocabulary, 20 test texts), on the files where the tests find ../shared
TINY = (
    "--config.data.per_class_limit=60",
    "--config.data.val_size=10",
    "--config.eval.test_per_class=10",
    "--config.data.compact_vocab=256",
    "--config.compile_cache_min_secs=0",
    f"--config.data.train_path={IMDB_DIR / 'train.jsonl.gz'}",
    f"--config.data.test_path={IMDB_DIR / 'test.jsonl.gz'}",
    f"--config.data.tokenizer={TOKENIZER_DIR}",
)
TEXTS = ("A wonderful film, I loved it.", "Dull, dull, dull.", "A thin plot and wooden acting.")


def shell(cmd: Command, extra=()) -> str:
    """`cmd` as a bash line run from a temporary folder: run.py from the repo, its configs and
    `../shared` paths made absolute."""
    args = []
    for arg in cmd.argv[1:]:
        name, eq, value = arg.partition("=")
        if name == "--config":
            value = str(REPO / value)
        elif value.startswith("../shared"):
            value = str(shared_path(value))
        args.append(name + eq + value)
    line = shlex.join([sys.executable, str(REPO / "run.py"), *args, *extra])
    if cmd.stdin:
        line = f"cat {shlex.quote(cmd.stdin)} | {line}"
    return f"{line} > {shlex.quote(cmd.stdout)}" if cmd.stdout else line


def bash(line: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", line], cwd=cwd, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The README's runnable training commands (the first command), with TINY, in one folder."""
    folder = tmp_path_factory.mktemp("readme_runs")
    tiny = (*TINY, f"--config.compile_cache_dir={XLA_CACHE}")  # the session's, for every command
    return folder, [(c, bash(shell(c, tiny), folder)) for c in RUN_TRAIN]


@needs_shared
def test_readme_training_runs(trained):
    folder, runs = trained
    assert runs
    for cmd, p in runs:
        assert p.returncode == 0, f"{cmd.line}\n{p.stderr[-3000:]}"
        assert (folder / workdir_of(cmd) / "report.md").is_file()
        assert "test accuracy (bayes):" in p.stdout


def write_input(path: Path, field: str, bad: bool) -> list[int]:
    """TEXTS in the format `path`'s name says (jsonl, csv with a header, txt; maybe .gz), a bad
    line second when `bad` (invalid JSON; invalid UTF-8 in csv/txt): the good texts' line
    numbers."""
    fmt = path.name.removesuffix(".gz").rsplit(".", 1)[-1]
    if fmt in ("jsonl", "json"):
        lines = [json.dumps({field: t}).encode() for t in TEXTS]
        bad_line = b'{"' + field.encode() + b'": unquoted'
    elif fmt == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([[field], *([t] for t in TEXTS)])
        lines, bad_line = [ln.encode() for ln in out.getvalue().splitlines()], b"\xff\xfe bad"
    elif fmt == "txt":
        lines, bad_line = [t.encode() for t in TEXTS], b"\xff\xfe bad"
    else:
        raise AssertionError(f"{path.name}: no input of this format can be written here")
    first = len(lines) - len(TEXTS)  # a csv header
    numbers = list(range(first + 1, len(lines) + 1))
    if bad:
        lines.insert(first + 1, bad_line)
        numbers = [n + (n > first + 1) for n in numbers]
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return numbers


def expected_outputs(cmd: Command, flags_: dict) -> tuple[str, dict]:
    """(the mode, {file or '<stdout>': what it holds}) that `cmd` says it writes: 'predictions'
    or 'explanations' (jsonl), an HTML 'page', explain's 'lines', eval's 'summary'."""
    mode, output = mode_of(cmd), flags_.get("output", [""])[-1]
    to_stdout = cmd.stdout or "<stdout>"
    if mode == "predict":
        return mode, {output if output not in ("", "-") else to_stdout: "predictions"}
    if mode == "explain":
        if output == "-":
            return mode, {to_stdout: "explanations"}
        page = Path(output or "explain.html")
        jsonl = page if page.suffix == ".jsonl" else page.with_suffix(".jsonl")
        out = {str(jsonl.with_suffix(".html")): "page", str(jsonl): "explanations"}
        return mode, out | ({cmd.stdout: "lines"} if cmd.stdout else {})
    if mode == "eval":  # the run's files are rewritten in the workdir; the summary on stdout
        return mode, {to_stdout: "summary"}
    raise AssertionError(f"--mode={mode}: add what it writes to expected_outputs")


def run_and_check(cmd: Command, runs: Path, cwd: Path) -> list[str]:
    """Run a README command on the trained run(s) as written, from `cwd`, on inputs written
    here, and return what is wrong: its exit, the files it writes, their lines."""
    for p in runs.iterdir():
        (cwd / p.name).symlink_to(p)
    a = parse_args(cmd.argv[1:])
    own = json.loads((runs / workdir_of(cmd) / "config.json").read_text())["data"]
    labels = set(own["label_names"])
    mode, outputs = expected_outputs(cmd, a.flags)
    source = cmd.stdin or a.flags.get("input", ["-"])[-1]
    texts = a.flags.get("text", [])
    ids = [f"text {i + 1}" for i in range(len(texts))]
    if mode in ("predict", "explain") and not texts:
        if source == "-":
            return ["reads stdin, and the README gives it none"]
        field = a.flags.get("text_field", [own["text_field"]])[-1]
        bad = a.flags.get("skip_bad_lines", ["false"])[-1] == "true"
        numbers = write_input(cwd / source, field, bad)
        ids = [f"{'stdin' if cmd.stdin else source}:{n}" for n in numbers]
    before = {p.name for p in cwd.iterdir()}
    p = bash(shell(cmd), cwd)
    if p.returncode != 0:
        return [f"exit {p.returncode}: {p.stderr.strip()[-2000:]}"]
    errors = []
    made = {q.name for q in cwd.iterdir()} - before
    if made != set(outputs) - {"<stdout>"}:
        errors.append(f"wrote {sorted(made)}, the README says {sorted(outputs)}")
    for name, kind in outputs.items():
        text = p.stdout if name == "<stdout>" else (cwd / name).read_text()
        if kind == "page":
            errors += [] if "<html" in text.lower() else [f"{name}: not an HTML page"]
            continue
        if kind in ("lines", "summary"):
            if kind == "summary" and "test accuracy" not in text:
                errors.append(f"{name}: no test accuracy in {text[-500:]!r}")
            continue
        rows = [json.loads(line) for line in text.splitlines()]
        if [r["id"] for r in rows] != ids:
            errors.append(f"{name}: ids {[r['id'] for r in rows]}, expected {ids}")
        key = "prediction" if kind == "predictions" else "predicted"
        floor = next(
            (float(a.split("=", 1)[1]) for a in cmd.argv if a.startswith("--abstain_below=")), None
        )
        for r in rows:
            abstained = (
                floor is not None and r[key] is None and max(r["posteriors"].values()) < floor
            )
            if (r[key] not in labels and not abstained) or not math.isclose(
                sum(r["posteriors"].values()), 1
            ):
                errors.append(f"{name}: {r}")
            if kind == "explanations" and not math.isclose(
                r["token_sum"] + r["prior_term"], r["margin"], rel_tol=1e-4, abs_tol=1e-4
            ):
                errors.append(f"{name}: token terms + prior != margin in {r['id']}")
    history = (runs / workdir_of(cmd) / "history.jsonl").read_text().splitlines()
    if json.loads(history[-1])["mode"] != mode:
        errors.append(f"history.jsonl's last line is not this {mode}: {history[-1]}")
    return errors


@needs_shared
@pytest.mark.parametrize("cmd", RUN_USE, ids=[f"{i}-{mode_of(c)}" for i, c in enumerate(RUN_USE)])
def test_readme_command_runs(cmd, trained, tmp_path):
    found = run_and_check(cmd, trained[0], tmp_path)
    assert not found, "\n".join([cmd.line, *found])


@needs_shared
def test_a_readme_command_that_fails_is_caught(trained, tmp_path):
    """A predict the program refuses (a jsonl read as csv) is reported, not passed."""
    old = "--input=new.jsonl --output=labels.jsonl"
    broken = README.replace(old, "--input=new.jsonl --input_format=csv --output=labels.jsonl")
    assert broken != README and problems(broken) == []  # valid on paper
    cmd = next(c for c, run, _ in plan(broken) if run and "--input_format=csv" in c.argv)
    found = run_and_check(cmd, trained[0], tmp_path)
    assert found and found[0].startswith("exit 1: "), found
