"""gencls_jax's command line: train, evaluate, generate, report, predict, explain, add a class.

    gencls --config=configs/tiny.py --workdir=runs/tiny                    # train, then evaluate
    gencls --config=configs/full_10e.py --workdir=runs/full_10e --config.train.epochs=12
    gencls --mode=eval --workdir=runs/full_6e                              # the run's own config
    gencls --mode=eval --workdirs=runs/seed0,runs/seed1 --workdir=runs/ens  # an ensemble of runs
    gencls --mode=generate --config=configs/augmented_6e.py --workdir=runs/full_6e
    gencls --mode=report --workdirs=runs/subset_500_1e,runs/full_6e,runs/augmented_6e
    gencls --mode=predict --workdir=runs/full_6e --input=new.jsonl --output=labels.jsonl
    cat reviews.txt | gencls --mode=predict --workdir=runs/full_6e > labels.jsonl
    gencls --mode=explain --workdir=runs/full_6e --text="A wonderful film." --output=why.html
    gencls --mode=add_class --workdir=runs/trec --new_workdir=runs/trec7 --input=new.txt --label=NEW

`gencls` (installed by pip) and `python run.py` are the same program. The same --workdir
resumes an interrupted run (Ctrl-C saves a checkpoint first, then the program exits with status
130). A workdir keeps its config: training it again with settings that would change the model
is refused, and eval/generate/predict/explain use the run's own config (config.json), so they
need only the workdir, from any folder. Train, eval and generate hold the workdir's lock
(`runs/lock.py`): a second such command in the same workdir is refused; predict and explain only
read it. Ctrl-C anywhere exits with status 130 (`system/interrupt.py`), leaving every file whole.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from absl import app, flags, logging
from ml_collections import config_flags

from gencls_jax import config_keys
from gencls_jax.system import interrupt

if TYPE_CHECKING:
    from gencls_jax.data.inputs import Inputs

# What each --mode does, the flags it needs and those it may take: `--help` prints this.
_OVERRIDES = "config.KEY=VALUE"  # any number of --config.* overrides (--help_config lists them)
_RUN_FLAGS = ("checkpoint", "config", _OVERRIDES)  # the modes that use a trained run
_INPUT_FLAGS = ("input", "input_format", "text_field", "skip_bad_lines", "output")
MODES = {
    "train": (
        "train a model in --workdir, then evaluate it (the same command resumes the run)",
        ("config", "workdir"),
        (_OVERRIDES,),
    ),
    "eval": (
        "score a trained run's validation and test texts again (another test set: "
        "--config.data.test_path); with --workdirs, an ensemble of runs of one task evaluated "
        "as one run into the new folder --workdir",
        ("workdir",),
        ("workdirs", *_RUN_FLAGS),
    ),
    "generate": (
        "sample synthetic training texts from a trained run's class models",
        ("workdir",),
        _RUN_FLAGS,
    ),
    "report": (
        "compare runs with the first: accuracy, per-class F1, McNemar's test, a verdict each",
        ("workdirs",),
        ("report_file",),
    ),
    "predict": (
        "label new texts with a trained run: one JSON line per text",
        ("workdir",),
        (*_INPUT_FLAGS, "abstain_below", *_RUN_FLAGS),
    ),
    "explain": (
        "why a text got its label: each token's share of the decision margin (HTML + jsonl)",
        ("workdir",),
        ("text", *_INPUT_FLAGS, "against", *_RUN_FLAGS),
    ),
    "add_class": (
        "a per_class LM run plus one class trained alone on the texts of --input, as a new run "
        "in --new_workdir (--workdir is only read)",
        ("workdir", "new_workdir", "input", "label"),
        ("input_format", "text_field", "skip_bad_lines", *_RUN_FLAGS),
    ),
}
_MULTI_PROCESS = ("coordinator_address", "num_processes", "process_id")  # any mode but report

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "experiment config file (configs/*.py)", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "where the run's checkpoints, metrics and reports live"
)
_MODE = flags.DEFINE_enum("mode", "train", list(MODES), "what to do")
_WORKDIRS = flags.DEFINE_list(
    "workdirs",
    [],
    "report mode: the runs to compare (the first is the baseline); eval: an ensemble's members",
)
_REPORT_FILE = flags.DEFINE_string(
    "report_file", "", "report mode: also write the comparison (markdown) here"
)
_WHICH = flags.DEFINE_enum(
    "checkpoint", "best", ["best", "latest"], "eval/generate/predict/explain: which checkpoint"
)
_INPUT = flags.DEFINE_string(
    "input",
    "",
    "predict/explain: texts to classify, a jsonl, csv or txt file (one text per line); "
    "'-' or none: stdin; add_class: the new class's texts",
)
_INPUT_FORMAT = flags.DEFINE_enum(
    "input_format",
    "auto",
    ["auto", "jsonl", "csv", "txt"],
    "predict/explain: the --input's format; auto: by its name (.jsonl/.json, .csv, .txt, "
    "each maybe .gz), stdin: jsonl if the first line starts with '{', else txt",
)
_TEXT_FIELD = flags.DEFINE_string(
    "text_field", "", "predict/explain: the jsonl/csv field holding the text (default: the run's)"
)
_SKIP_BAD = flags.DEFINE_bool(
    "skip_bad_lines",
    False,
    "predict/explain: leave out bad input lines (each reported) instead of stopping at the first",
)
_OUTPUT = flags.DEFINE_string(
    "output",
    "",
    "predict: the jsonl of predictions ('-' or none: stdout); explain: the HTML page "
    "(default explain.html; the same numbers as jsonl beside it, or x.jsonl names the jsonl "
    "and the page is x.html; '-': the jsonl on stdout, no page)",
)
_ABSTAIN = flags.DEFINE_float(
    "abstain_below",
    None,
    "predict: answer null (prediction) where the top posterior, at the run's temperature, is "
    "under this; in (0, 1)",
)
_TEXT = flags.DEFINE_multi_string(
    "text", [], "explain: a text to explain (repeatable); else --input or stdin"
)
_AGAINST = flags.DEFINE_string(
    "against",
    None,
    "explain: the class the predicted one is compared with (default: the runner-up)",
)
_NEW_WORKDIR = flags.DEFINE_string(
    "new_workdir", None, "add_class: the new run's folder (new or empty; --workdir is only read)"
)
_LABEL = flags.DEFINE_string("label", None, "add_class: the new class's name")

_COORDINATOR = flags.DEFINE_string(
    "coordinator_address",
    "",
    "multi-process: host:port of process 0's coordinator, for launchers JAX does not detect "
    "(none needed on TPU pods, SLURM or Open MPI with --config.train.distributed=True)",
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", 0, "multi-process: how many processes (with --coordinator_address)"
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", -1, "multi-process: this process's rank, 0..num_processes-1"
)

# modes that use a trained run's own config: without --config, its config.json is the config
_RUN_MODES = ("eval", "generate", "predict", "explain", "add_class")


class _QuietLibraries:
    """Keep orbax's per-save INFO chatter out of the run log (its warnings still show)."""

    def filter(self, record) -> bool:
        return record.levelno >= 30 or "/orbax/" not in record.pathname


def run_mode(argv) -> None:
    """absl's main: what --mode says. Bad input of any kind ends in one `error:` line."""
    del argv
    logging.get_absl_handler().addFilter(_QuietLibraries())
    from gencls_jax.errors import DataError, RunError
    from gencls_jax.reports import progress
    from gencls_jax.runs import lock

    progress.route_logging_through_progress_bars()
    if _MODE.value == "report":
        return _report()
    try:
        config = _CONFIG.value
        config is None or config.get("seed")  # the file loads lazily: touch it here
        if _MODE.value == "eval" and _WORKDIRS.value:  # an ensemble: its members' own configs
            config = _ensemble_config(config)
    except OSError as e:  # the config file is missing or does not load
        given = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--config=")), "?")
        sys.exit(
            f"error: the config file {given} does not load "
            f"({type(e).__name__}: {str(e).splitlines()[0]})"
        )
    if config is None or not _WORKDIR.value:
        sys.exit(f"--mode={_MODE.value} needs --config=configs/<name>.py and --workdir=<folder>")
    missing = [
        f"--{n}" for n in MODES[_MODE.value][1] if n != "config" and not flags.FLAGS[n].value
    ]
    if missing:
        sys.exit(f"error: --mode={_MODE.value} needs {' and '.join(missing)}")
    from gencls_jax.system import runtime

    runtime.setup(config, _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    import jax

    if jax.process_index() > 0:  # process 0 logs the run; the others only warnings and errors
        logging.set_verbosity(logging.WARNING)
    # the modes that write the workdir hold its lock (process 0 for all of a multi-process run)
    workdir_lock = lock.WorkdirLock(_WORKDIR.value, _MODE.value)
    try:
        if _MODE.value in lock.WRITING_MODES and jax.process_index() == 0:
            workdir_lock.acquire()
        out = _run(config)
    except (RunError, DataError, lock.WorkdirBusy) as e:
        sys.exit(f"error: {e}")
    finally:  # also on Ctrl-C, before main() ends the process
        workdir_lock.release()
    if out is not None:
        _finish(out, config)


def _report() -> None:
    """--mode=report: the runs of --workdirs compared with the first."""
    from gencls_jax.reports import compare
    from gencls_jax.system import fileio

    if not _WORKDIRS.value:
        sys.exit("error: --mode=report needs --workdirs=run_a,run_b,...")
    missing = [w for w in _WORKDIRS.value if not Path(w).is_dir()]
    if missing:
        sys.exit(f"error: --workdirs: no such folder: {', '.join(missing)}")
    text = compare.comparison_report(_WORKDIRS.value)
    print(text)
    if _REPORT_FILE.value:
        fileio.write_text(_REPORT_FILE.value, text)


def _run(config) -> dict | None:
    """The mode's work; a dict for the modes that end with a run summary."""
    from gencls_jax.runs import rules

    if _MODE.value == "eval" and _WORKDIRS.value:
        from gencls_jax.commands.ensemble import evaluate_ensemble

        return evaluate_ensemble(_WORKDIRS.value, _WORKDIR.value, _WHICH.value)
    if _MODE.value == "train":
        from gencls_jax.commands.train import train_and_evaluate

        return train_and_evaluate(config, _WORKDIR.value)
    # the run's own config, and what the command's --config (or overrides) may change
    config, used = rules.eval_config(_WORKDIR.value, config)
    if _MODE.value == "eval":
        from gencls_jax.commands.evaluate import evaluate

        return evaluate(config, _WORKDIR.value, _WHICH.value, used)
    if _MODE.value == "generate":
        from gencls_jax.commands.generate import generate_synthetic

        return generate_synthetic(config, _WORKDIR.value, _WHICH.value)
    if _MODE.value == "add_class":
        from gencls_jax.commands.add_class import add_class

        read = functools.partial(_texts_from_input, config)  # after the run's own checks
        args = (_NEW_WORKDIR.value, _LABEL.value, read, _WHICH.value, used)
        return add_class(config, _WORKDIR.value, *args)
    if _MODE.value == "predict":
        _predict(config)
    else:
        _explain(config)
    return None


def _ensemble_config(given):
    """--mode=eval --workdirs: the first member's config (for the runtime settings); each member
    is scored with its own, so a --config is refused."""
    from gencls_jax.commands.ensemble import member_configs
    from gencls_jax.errors import RunError

    if given is not None:
        sys.exit("error: --mode=eval --workdirs scores each run with its own config: no --config")
    try:
        return member_configs(_WORKDIRS.value)[0]
    except RunError as e:
        sys.exit(f"error: {e}")


def _finish(out: dict, config) -> None:
    """The end of train, eval and generate: the log's last line, the summary, the exit status."""
    brief = {k: v for k, v in out.items() if k not in ("results",)}
    logging.info("done: %s", json.dumps(brief, default=str))
    if out.get("stop_reason") == "interrupted":  # `run.py ... && next` must not go on
        sys.exit(128 + int(out.get("signal") or signal.SIGINT))
    if "accuracy" in out:
        from gencls_jax.reports.phases import fmt_table
        from gencls_jax.reports.summary import end_of_run

        phases = fmt_table(out["phases"]) if out.get("phases") else ""
        written = _NEW_WORKDIR.value if _MODE.value == "add_class" else _WORKDIR.value
        members = tuple(_WORKDIRS.value or ()) if _MODE.value == "eval" else ()
        members = members or tuple(out.get("members", ()))  # a search's ensemble (train)
        print(end_of_run(written, out, config.eval.decision, phases, members))


def _texts_from_input(config) -> "Inputs":
    from gencls_jax.data import inputs

    if not _INPUT.value and sys.stdin.isatty():
        print("reading texts from stdin, one per line (end with Ctrl-D)", file=sys.stderr)
    d = config.data
    return inputs.read_inputs(
        _INPUT.value,
        _INPUT_FORMAT.value,
        text_field=_TEXT_FIELD.value or d.text_field,
        id_field=d.id_field,
        label_field=d.label_field,
        skip_bad_lines=_SKIP_BAD.value,
        clean_html=bool(d.clean_html),
    )


def _predict(config) -> None:
    """--mode=predict: the inputs are read (and any bad line reported) before the model loads."""
    from gencls_jax.commands import predict

    if _TEXT.value or _AGAINST.value is not None:
        sys.exit("error: --text and --against are explain's flags (predict reads --input)")
    inputs = _texts_from_input(config)
    try:
        predict.run_command(
            config, _WORKDIR.value, _WHICH.value, inputs, _OUTPUT.value, _ABSTAIN.value
        )
    except BrokenPipeError:  # stdout's reader stopped early (`| head`): exit without a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def _explain(config) -> None:
    """--mode=explain: --text (repeatable) or the texts of --input / stdin."""
    from gencls_jax.commands import explain

    explain.check_explainable(_WORKDIR.value)
    if _TEXT.value and _INPUT.value:
        sys.exit("error: give either --text or --input, not both")
    if _TEXT.value:
        from gencls_jax.data.inputs import Inputs

        n = len(_TEXT.value)
        ids, where = [f"text {i + 1}" for i in range(n)], [f"--text #{i + 1}" for i in range(n)]
        texts = Inputs(list(_TEXT.value), ids, where, [], "--text")
    else:
        texts = _texts_from_input(config)
    explain.run_command(
        config, _WORKDIR.value, _WHICH.value, texts, against=_AGAINST.value, output=_OUTPUT.value
    )


def _flag(argv, name: str) -> str | None:
    """The value of --name=V or --name V in argv (read before absl parses it)."""
    for i, a in enumerate(argv):
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
        if a == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def usage() -> str:
    """--help: what the program does, its modes with the flags each takes, every flag."""

    def wrap(text: str, indent: str, more: str) -> str:
        return textwrap.fill(
            " ".join(text.split()), 100, initial_indent=indent, subsequent_indent=more
        )

    def synopsis(needs: tuple, takes: tuple) -> str:
        return " ".join([*(f"--{n}" for n in needs), *(f"[--{n}]" for n in takes)])

    def flag_help(f) -> str:
        default = f" (default: {f.default})" if f.default not in (None, "", [], False) else ""
        return wrap(f"--{f.name}: {f.help}{default}", "  ", "      ")

    lines = [
        "usage: gencls [--mode=MODE] [flags]    (python run.py [--mode=MODE] [flags] is the same)",
        "",
        __doc__.strip(),
        "",
        "modes (--mode=MODE, default train):",
    ]
    for mode, (what, needs, takes) in MODES.items():
        lines += [
            wrap(what, f"  {mode:9s} ", " " * 12),
            wrap(synopsis(needs, takes), " " * 12, " " * 14),
        ]
    lines += [
        wrap(
            f"every mode but report, on several processes: {synopsis((), _MULTI_PROCESS)}",
            "  ",
            "    ",
        ),
        "",
        "flags:",
        *(flag_help(f) for f in flags.FLAGS.get_flags_for_module(__name__)),
        f"  --{_OVERRIDES}: set one config key, on --config=FILE or on a run's own config",
        "  --help_config: every --config.* key with its default, its kind and its meaning",
        "  --helpfull: absl's list of every flag, the libraries' included",
    ]
    return "\n".join(lines)


def parse_flags(argv):
    """absl's parser, with an unknown or mistyped --config.* key as a one-line error; `--help`
    and `--help_config` answer before anything loads. Eval, generate, predict and explain without
    --config take the run's own config (its config.json on today's defaults) as the --config."""
    if any(a in ("--help", "--helpshort", "-h", "-?") for a in argv[1:]):
        print(usage())
        sys.exit(0)
    if "--help_config" in argv[1:]:
        print(config_keys.table())
        sys.exit(0)
    own_config = None
    if (
        _flag(argv, "mode") in _RUN_MODES
        and _flag(argv, "config") is None
        and _flag(argv, "workdir")
        and not _flag(argv, "workdirs")  # an ensemble's members have the configs
    ):
        from gencls_jax.errors import RunError
        from gencls_jax.runs import rules

        workdir = _flag(argv, "workdir")
        try:
            own_config = rules.saved_config(workdir)
        except RunError as e:
            sys.exit(f"error: {e}")
        if own_config is None:
            sys.exit(
                f"error: {workdir} has no config.json: no run was trained there "
                "(run --mode=train first)"
            )
    elif _flag(argv, "config"):
        # experiment configs import `configs.base`: the folder holding configs/ must be
        # importable when the program runs from elsewhere (the installed `gencls`)
        path = Path(_flag(argv, "config").split(":", 1)[0])
        if not path.is_file():
            sys.exit(f"error: --config={path}: no such file")
        folder = path.resolve().parent
        if folder.name == "configs" and str(folder.parent) not in sys.path:
            sys.path.insert(0, str(folder.parent))
    try:
        if own_config is not None:
            own_config, argv = config_keys.overridden(own_config, argv)
        rest = flags.FLAGS(argv)
    except (flags.Error, OSError) as e:  # a bad value, or a config file that does not load
        sys.exit(f"error: {' '.join(str(e).split())}")
    except SyntaxError as e:  # the config file is not valid Python
        sys.exit(f"error: {e.filename}:{e.lineno}: invalid Python in the config file ({e.msg})")
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # an unknown --config.* key
        msg = " ".join(str(e).replace("\\'", "").replace("\\n", " ").strip("'\"").split())
        sys.exit(f"error: bad --config override: {msg}")
    if own_config is not None:
        flags.FLAGS.config = own_config  # the run's own config is this command's --config
    return rest


def main() -> None:
    """The `gencls` console script (and `python run.py`)."""
    interrupt.install()
    try:
        app.run(run_mode, flags_parser=parse_flags)
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (which saves and returns first)
        interrupt.exit_interrupted()
